#!/usr/bin/env python3
"""Writes readings.csv of the ceramic-tile worked example (October 2026, Asia/Shanghai).

Run from this folder: python3 generate.py. The profile is deliberately simple so that every
number of the expected report can be computed by hand (see README.md).

main   grid incomer, 15-minute readings of energy_import and energy_export (kWh)
         import per 15 min: valley 500, flat 400, peak 450, sharp 450 kWh
         (+250 kWh in 2026-10-15 10:00-10:15: a 2 800 kW demand peak)
         one spike reading (99 999 999) at 2026-10-20 03:00, rejected
         export per 15 min: 25 kWh from 11:00 to 14:00, else 0
         one reading either side of the month (must not count)
pv     PV generation meter, hourly energy_import: 500 kWh/h from 08:00 to 16:00
gas    natural gas flow computer, hourly gas_volume (m3, u32 x 0.01: wraps at 42 949 672.96):
         500 m3/h; starts near the wrap (rollover on 2026-10-05); readings of 2026-10-08
         10:00, 11:00 and 12:00 missing (a gap)
"""
from datetime import datetime, timedelta, timezone

TZ = timezone(timedelta(hours=8))
START = datetime(2026, 10, 1, tzinfo=TZ)
END = datetime(2026, 11, 1, tzinfo=TZ)
WRAP = 4294967296  # u32, in 0.01 m3


def band(t):
    h = t.hour
    if h < 8 or h >= 23:
        return "valley"
    if 11 <= h < 18:
        return "flat"
    if h == 19:
        return "sharp"
    return "peak"


RATE = {"valley": 500, "flat": 400, "peak": 450, "sharp": 450}
rows = []

# main: energy_import and energy_export, every 15 minutes
imp, exp = 5_000_000, 20_000
rows.append((START - timedelta(minutes=15), "main", "energy_import", imp - 500))
t = START
while True:
    spike = t == datetime(2026, 10, 20, 3, 0, tzinfo=TZ)
    rows.append((t, "main", "energy_import", 99_999_999 if spike else imp))
    rows.append((t, "main", "energy_export", exp))
    if t == END:
        break
    inc = RATE[band(t)]
    if t == datetime(2026, 10, 15, 10, 0, tzinfo=TZ):
        inc += 250
    imp += inc
    exp += 25 if 11 <= t.hour < 14 else 0
    t += timedelta(minutes=15)
rows.append((END + timedelta(minutes=15), "main", "energy_import", imp + 500))

# pv and gas, hourly
pv, gas = 300_000, 4_290_000_000  # gas in 0.01 m3
t = START
missing = {datetime(2026, 10, 8, h, 0, tzinfo=TZ) for h in (10, 11, 12)}
while True:
    rows.append((t, "pv", "energy_import", pv))
    if t not in missing:
        rows.append((t, "gas", "gas_volume", "%.2f" % (gas / 100)))
    if t == END:
        break
    pv += 500 if 8 <= t.hour < 16 else 0
    gas = (gas + 50_000) % WRAP
    t += timedelta(hours=1)

rows.sort(key=lambda r: (r[0], r[1], r[2]))
with open("readings.csv", "w") as f:
    f.write("time,device,quantity,value\n")
    for t, d, q, v in rows:
        f.write(f"{t.isoformat()},{d},{q},{v}\n")
