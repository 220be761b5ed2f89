//! A small simulated factory: Modbus TCP meters served in-process on loopback, with loads that
//! vary over time and counters that integrate them. Used by `energy-gateway demo` and by tests.
//!
//! Meters (register maps follow the real models named; see `config/demo.toml`):
//! - `main`: three-phase incomer, Chint DTSU666 map (holding registers, float32 ABCD, scaled units)
//! - `kiln`, `press`: line sub-meters, Eastron SDM630 map (input registers, float32 ABCD)
//! - `gas`: gas flow computer (volume u32 in 0.01 m³, low word first; flow float32)
//! - `production`: production counter of the press line (u32, 0.01 m² of tile)

use std::collections::BTreeMap;
use std::future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response};

use crate::acquisition::modbus::decode::encode;
use crate::config::{ValueType, WordOrder};

/// The register tables of one simulated meter.
#[derive(Debug, Default)]
pub struct RegisterBank {
    pub holding: BTreeMap<u16, u16>,
    pub input: BTreeMap<u16, u16>,
}

impl RegisterBank {
    fn read(table: &BTreeMap<u16, u16>, start: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        (0..count)
            .map(|i| {
                start
                    .checked_add(i)
                    .and_then(|a| table.get(&a).copied())
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }

    /// Defines registers `start..start+count` as zero so reads across them succeed.
    pub fn define(table: &mut BTreeMap<u16, u16>, start: u16, count: u16) {
        for a in start..start + count {
            table.entry(a).or_insert(0);
        }
    }

    /// Writes `value` encoded as `t` in `order` at `addr`.
    pub fn put(
        table: &mut BTreeMap<u16, u16>,
        addr: u16,
        value: f64,
        t: ValueType,
        order: WordOrder,
    ) {
        for (i, w) in encode(value, t, order).into_iter().enumerate() {
            table.insert(addr + i as u16, w);
        }
    }
}

/// A Modbus service answering reads from a shared [`RegisterBank`].
#[derive(Clone)]
pub struct MeterService {
    bank: Arc<Mutex<RegisterBank>>,
}

impl Service for MeterService {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let bank = self.bank.lock().unwrap_or_else(|p| p.into_inner());
        let res = match req {
            Request::ReadHoldingRegisters(a, n) => {
                RegisterBank::read(&bank.holding, a, n).map(Response::ReadHoldingRegisters)
            }
            Request::ReadInputRegisters(a, n) => {
                RegisterBank::read(&bank.input, a, n).map(Response::ReadInputRegisters)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        future::ready(res)
    }
}

/// Several simulated meters behind one address, by unit id: an RS-485 line, an RTU-over-TCP
/// serial server or a Modbus TCP gateway. A unit that is not there, or is set silent, does not
/// answer at all (the poller sees a timeout), as on a real bus.
#[derive(Clone, Default)]
pub struct BusService {
    pub units: Arc<Mutex<BTreeMap<u8, Arc<Mutex<RegisterBank>>>>>,
    pub silent: Arc<Mutex<std::collections::BTreeSet<u8>>>,
}

impl BusService {
    /// Adds (or replaces) the meter answering as `unit`.
    pub fn insert(&self, unit: u8, bank: Arc<Mutex<RegisterBank>>) {
        self.units
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(unit, bank);
    }

    /// Makes `unit` stop (true) or resume (false) answering.
    pub fn set_silent(&self, unit: u8, silent: bool) {
        let mut s = self.silent.lock().unwrap_or_else(|p| p.into_inner());
        if silent {
            s.insert(unit);
        } else {
            s.remove(&unit);
        }
    }
}

impl Service for BusService {
    type Request = tokio_modbus::SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        if self
            .silent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&req.slave)
        {
            return future::ready(Ok(None));
        }
        let bank = self
            .units
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&req.slave)
            .cloned();
        let Some(bank) = bank else {
            return future::ready(Ok(None));
        };
        let res = MeterService { bank }
            .call(req.request)
            .into_inner()
            .map(Some);
        future::ready(res)
    }
}

/// Serves `service` as a Modbus TCP server on `listener` until the returned task is aborted.
pub fn serve_tcp<S>(listener: TcpListener, service: S) -> JoinHandle<()>
where
    S: Service<Request = tokio_modbus::SlaveRequest<'static>> + Clone + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let server = Server::new(listener);
        let new_service = move |_addr| Ok(Some(service.clone()));
        let on_connected = move |stream, addr| {
            let new_service = new_service.clone();
            async move { accept_tcp_connection(stream, addr, new_service) }
        };
        if let Err(e) = server.serve(&on_connected, |_err| {}).await {
            tracing::warn!("simulated gateway stopped: {e}");
        }
    })
}

/// Serves `service` with RTU framing through TCP connections (a simulated serial device server).
pub fn serve_rtu_over_tcp<S>(listener: TcpListener, service: S) -> JoinHandle<()>
where
    S: Service<Request = tokio_modbus::SlaveRequest<'static>> + Clone + Send + Sync + 'static,
{
    use tokio_modbus::server::rtu_over_tcp;
    tokio::spawn(async move {
        let server = rtu_over_tcp::Server::new(listener);
        let new_service = move |_addr| Ok(Some(service.clone()));
        let on_connected = move |stream, addr| {
            let new_service = new_service.clone();
            async move { rtu_over_tcp::accept_tcp_connection(stream, addr, new_service) }
        };
        if let Err(e) = server.serve(&on_connected, |_err| {}).await {
            tracing::warn!("simulated serial server stopped: {e}");
        }
    })
}

/// Serves `service` as Modbus RTU on the serial port `path` (one end of a pty pair in tests).
pub fn serve_rtu<S>(path: &str, baud: u32, service: S) -> std::io::Result<JoinHandle<()>>
where
    S: Service<Request = tokio_modbus::SlaveRequest<'static>> + Send + Sync + 'static,
{
    let port = tokio_serial::SerialStream::open(&tokio_serial::new(path, baud))?;
    let server = tokio_modbus::server::rtu::Server::new(port);
    Ok(tokio::spawn(async move {
        if let Err(e) = server.serve_forever(service).await {
            tracing::warn!("simulated RTU line stopped: {e}");
        }
    }))
}

/// Serves `bank` as a Modbus TCP server on `listener` until the returned task is aborted.
pub fn serve(listener: TcpListener, bank: Arc<Mutex<RegisterBank>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let server = Server::new(listener);
        let service = MeterService { bank };
        let new_service = move |_addr| Ok(Some(service.clone()));
        let on_connected = move |stream, addr| {
            let new_service = new_service.clone();
            async move { accept_tcp_connection(stream, addr, new_service) }
        };
        if let Err(e) = server.serve(&on_connected, |_err| {}).await {
            tracing::warn!("simulated meter stopped: {e}");
        }
    })
}

/// A meter of `template`, with every point and ratio holding a known value: returns the register
/// bank and, per quantity, the value the gateway must read (canonical unit). `seed` varies the
/// values. Registers between the template's values are defined (as zero) so reads across holes
/// succeed, as on the real meters the templates allow it for.
pub fn template_meter(
    template: &crate::acquisition::modbus::templates::MeterTemplate,
    seed: u32,
) -> (RegisterBank, BTreeMap<crate::readings::Quantity, f64>) {
    use crate::config::RegisterKind;
    let mut bank = RegisterBank::default();
    // Define every register from the lowest to the highest used one, per table and per cluster
    // (clusters further apart than 256 registers are defined separately).
    let mut spans: Vec<(RegisterKind, u16, u16)> = template
        .points
        .iter()
        .map(|p| (p.kind, p.register, p.value_type.registers()))
        .chain(
            template
                .ratios
                .iter()
                .map(|r| (r.kind, r.register, r.value_type.registers())),
        )
        .collect();
    spans.sort();
    let mut i = 0;
    while i < spans.len() {
        let (kind, start, _) = spans[i];
        let mut end = u32::from(start) + u32::from(spans[i].2);
        let mut j = i + 1;
        while j < spans.len() && spans[j].0 == kind && u32::from(spans[j].1) <= end + 256 {
            end = end.max(u32::from(spans[j].1) + u32::from(spans[j].2));
            j += 1;
        }
        let t = match kind {
            RegisterKind::Holding => &mut bank.holding,
            RegisterKind::Input => &mut bank.input,
        };
        RegisterBank::define(t, start, (end - u32::from(start)) as u16);
        i = j;
    }
    let mut ratios = BTreeMap::new();
    for (k, r) in template.ratios.iter().enumerate() {
        let raw = f64::from(10 + 10 * k as u32 + seed % 7); // pt 10.., ct 20..
        let t = match r.kind {
            RegisterKind::Holding => &mut bank.holding,
            RegisterKind::Input => &mut bank.input,
        };
        RegisterBank::put(t, r.register, raw, r.value_type, r.order);
        ratios.insert(r.name.clone(), raw * r.scale);
    }
    let mut expected = BTreeMap::new();
    for (k, p) in template.points.iter().enumerate() {
        let n = f64::from(seed % 97) + k as f64;
        let raw = match p.value_type {
            ValueType::U16 => 1000.0 + 37.0 * n,
            ValueType::I16 => -500.0 + 23.0 * n,
            ValueType::U32 | ValueType::U64 => 123_456.0 + 1001.0 * n,
            ValueType::I32 | ValueType::I64 => 54_321.0 + 999.0 * n,
            ValueType::F32 | ValueType::F64 => 2301.5 + 12.25 * n,
            ValueType::I32F32 => 12_345.0 + n + 0.625,
        };
        let t = match p.kind {
            RegisterKind::Holding => &mut bank.holding,
            RegisterKind::Input => &mut bank.input,
        };
        RegisterBank::put(t, p.register, raw, p.value_type, p.order);
        let mut v = raw * p.scale + p.offset;
        for r in &p.multiply_by {
            v *= ratios.get(r).copied().unwrap_or(f64::NAN);
        }
        expected.insert(p.quantity, v);
    }
    (bank, expected)
}

/// The simulated meters' ids, in the order they are started.
pub const METERS: &[&str] = &["main", "kiln", "press", "gas", "production"];

/// Physical state of the simulated plant.
#[derive(Debug, Clone)]
struct Plant {
    main_kwh: f64,
    main_export_kwh: f64,
    kiln_kwh: f64,
    press_kwh: f64,
    gas_m3: f64,
    tiles_m2: f64,
    rng: u64,
}

impl Plant {
    fn noise(&mut self) -> f64 {
        // xorshift64*: deterministic, good enough for jitter on a simulated load.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// Instantaneous values at time `t` seconds after start.
struct Loads {
    kiln_kw: f64,
    press_kw: f64,
    base_kw: f64,
    gas_m3h: f64,
    tiles_m2_per_s: f64,
}

fn loads(t: f64, plant: &mut Plant) -> Loads {
    let press_phase = (t * std::f64::consts::TAU / 40.0).sin();
    Loads {
        kiln_kw: 180.0 + 6.0 * plant.noise(),
        press_kw: 100.0 + 40.0 * press_phase + 3.0 * plant.noise(),
        base_kw: 25.0 + 2.0 * plant.noise(),
        gas_m3h: 120.0 + 10.0 * (t * std::f64::consts::TAU / 300.0).sin() + plant.noise(),
        tiles_m2_per_s: (0.45 + 0.15 * press_phase).max(0.0),
    }
}

/// A running simulated factory.
pub struct SimulatedFactory {
    banks: BTreeMap<&'static str, Arc<Mutex<RegisterBank>>>,
    addrs: BTreeMap<&'static str, SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimulatedFactory {
    /// Binds one loopback port per meter and starts serving and simulating.
    pub async fn start() -> std::io::Result<SimulatedFactory> {
        let mut banks = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        let mut tasks = Vec::new();
        for &id in METERS {
            let bank = Arc::new(Mutex::new(layout(id)));
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addrs.insert(id, listener.local_addr()?);
            tasks.push(serve(listener, bank.clone()));
            banks.insert(id, bank);
        }
        let mut plant = Plant {
            main_kwh: 1_234_567.8,
            main_export_kwh: 12.5,
            kiln_kwh: 654_321.0,
            press_kwh: 321_000.0,
            gas_m3: 98_765.43,
            tiles_m2: 5_000_000.0,
            rng: 0x9E37_79B9_7F4A_7C15,
        };
        update(&banks, &mut plant, 0.0, 0.0);
        let sim_banks = banks.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut last = 0.0;
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let t = started.elapsed().as_secs_f64();
                update(&sim_banks, &mut plant, t, t - last);
                last = t;
            }
        }));
        Ok(SimulatedFactory {
            banks,
            addrs,
            tasks,
        })
    }

    /// Loopback address of a meter.
    pub fn addr(&self, meter: &str) -> Option<SocketAddr> {
        self.addrs.get(meter).copied()
    }

    /// Direct access to a meter's registers (tests use it to set values or faults).
    pub fn bank(&self, meter: &str) -> Option<Arc<Mutex<RegisterBank>>> {
        self.banks.get(meter).cloned()
    }
}

impl Drop for SimulatedFactory {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The defined register ranges of each meter model.
fn layout(id: &str) -> RegisterBank {
    let mut b = RegisterBank::default();
    match id {
        "main" => {
            RegisterBank::define(&mut b.holding, 0x0000, 0x30); // configuration block
            RegisterBank::define(&mut b.holding, 0x1000, 0x40); // energy block
            RegisterBank::define(&mut b.holding, 0x2000, 0x50); // measurement block
            b.holding.insert(0x0006, 1); // IrAt CT ratio (primary values already)
            b.holding.insert(0x0007, 10); // UrAt PT ratio ×0.1
        }
        "kiln" | "press" => {
            RegisterBank::define(&mut b.input, 0x0000, 0x50);
            RegisterBank::define(&mut b.input, 0x00C8, 0x08); // line-to-line voltages
        }
        _ => RegisterBank::define(&mut b.holding, 0x0000, 0x10),
    }
    b
}

fn update(
    banks: &BTreeMap<&'static str, Arc<Mutex<RegisterBank>>>,
    p: &mut Plant,
    t: f64,
    dt: f64,
) {
    use ValueType::{F32, U32};
    use WordOrder::{ABCD, CDAB};
    let l = loads(t, p);
    let main_kw = l.kiln_kw + l.press_kw + l.base_kw;
    let h = dt / 3600.0;
    p.main_kwh += main_kw * h;
    p.kiln_kwh += l.kiln_kw * h;
    p.press_kwh += l.press_kw * h;
    p.gas_m3 += l.gas_m3h * h;
    p.tiles_m2 += l.tiles_m2_per_s * dt;
    let v = [230.1 + p.noise(), 229.6 + p.noise(), 230.8 + p.noise()];
    let pf = 0.94 + 0.01 * p.noise();
    let freq = 50.0 + 0.02 * p.noise();
    let phase_current = |kw: f64, v: f64| kw * 1000.0 / 3.0 / v / pf;

    if let Some(bank) = banks.get("main") {
        let mut b = bank.lock().unwrap_or_else(|x| x.into_inner());
        let hr = &mut b.holding;
        for (i, vi) in v.iter().enumerate() {
            RegisterBank::put(hr, 0x2006 + 2 * i as u16, vi * 10.0, F32, ABCD);
            RegisterBank::put(
                hr,
                0x200C + 2 * i as u16,
                phase_current(main_kw, *vi) * 1000.0,
                F32,
                ABCD,
            );
        }
        for (i, (a, b)) in [(0, 1), (1, 2), (2, 0)].into_iter().enumerate() {
            let ll = (v[a] + v[b]) / 2.0 * 3f64.sqrt();
            RegisterBank::put(hr, 0x2000 + 2 * i as u16, ll * 10.0, F32, ABCD);
            RegisterBank::put(
                hr,
                0x2014 + 2 * i as u16,
                main_kw / 3.0 * 10_000.0,
                F32,
                ABCD,
            );
        }
        RegisterBank::put(hr, 0x2012, main_kw * 10_000.0, F32, ABCD); // 0.1 W
        let kvar = main_kw * (1.0 - pf * pf).sqrt() / pf;
        RegisterBank::put(hr, 0x201A, kvar * 10_000.0, F32, ABCD); // 0.1 var
        RegisterBank::put(hr, 0x202A, pf * 1000.0, F32, ABCD);
        RegisterBank::put(hr, 0x2044, freq * 100.0, F32, ABCD);
        RegisterBank::put(hr, 0x101E, p.main_kwh, F32, ABCD);
        RegisterBank::put(hr, 0x1028, p.main_export_kwh, F32, ABCD);
    }
    for (id, kw, kwh) in [
        ("kiln", l.kiln_kw, p.kiln_kwh),
        ("press", l.press_kw, p.press_kwh),
    ] {
        if let Some(bank) = banks.get(id) {
            let mut b = bank.lock().unwrap_or_else(|x| x.into_inner());
            let ir = &mut b.input;
            for (i, vi) in v.iter().enumerate() {
                RegisterBank::put(ir, 2 * i as u16, *vi, F32, ABCD);
                RegisterBank::put(ir, 0x0006 + 2 * i as u16, phase_current(kw, *vi), F32, ABCD);
            }
            let kvar = kw * (1.0 - pf * pf).sqrt() / pf;
            for (i, (a, b)) in [(0, 1), (1, 2), (2, 0)].into_iter().enumerate() {
                RegisterBank::put(ir, 0x000C + 2 * i as u16, kw / 3.0 * 1000.0, F32, ABCD);
                RegisterBank::put(
                    ir,
                    0x00C8 + 2 * i as u16,
                    (v[a] + v[b]) / 2.0 * 3f64.sqrt(),
                    F32,
                    ABCD,
                );
            }
            RegisterBank::put(ir, 0x0038, kw / pf * 1000.0, F32, ABCD); // VA
            RegisterBank::put(ir, 0x003C, kvar * 1000.0, F32, ABCD); // var
            RegisterBank::put(ir, 0x0034, kw * 1000.0, F32, ABCD); // W
            RegisterBank::put(ir, 0x003E, pf, F32, ABCD);
            RegisterBank::put(ir, 0x0046, freq, F32, ABCD);
            RegisterBank::put(ir, 0x0048, kwh, F32, ABCD);
        }
    }
    if let Some(bank) = banks.get("gas") {
        let mut b = bank.lock().unwrap_or_else(|x| x.into_inner());
        RegisterBank::put(
            &mut b.holding,
            0x0000,
            (p.gas_m3 * 100.0).floor(),
            U32,
            CDAB,
        );
        RegisterBank::put(&mut b.holding, 0x0002, l.gas_m3h, F32, ABCD);
    }
    if let Some(bank) = banks.get("production") {
        let mut b = bank.lock().unwrap_or_else(|x| x.into_inner());
        RegisterBank::put(
            &mut b.holding,
            0x0000,
            (p.tiles_m2 * 100.0).floor(),
            U32,
            ABCD,
        );
    }
}
