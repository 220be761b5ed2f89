//! CJ/T 188-2018 (household meter data transmission: water, heat, gas) frames:
//! `FE.. 68 T A0..A6 C L DI0 DI1 SER DATA CS 16`. T is the meter type (0x10–0x19 water,
//! 0x20–0x29 heat, 0x30–0x39 gas, 0x40–0x49 others); the address is 14 BCD digits, least
//! significant byte first; CS is the modulo-256 sum from 0x68 to the end of the data. Unlike
//! DL/T 645 the data carries no 0x33 offset.
//!
//! Read data: C = 0x01, DI 901F (current cumulative flow / heat), answer 0x81, abnormal 0xC1.
//! Read address: C = 0x03, DI 810A, to T = 0xAA and address AAAAAAAAAAAAAA; the answer's
//! type and address fields are the meter's.

use std::fmt;

/// Control code of "read data".
pub const READ_DATA: u8 = 0x01;
/// Control code of "read address".
pub const READ_ADDRESS: u8 = 0x03;
/// Identifier sent with "read address".
pub const DI_ADDRESS: u16 = 0x810A;
/// Meter type wildcard.
pub const ANY_TYPE: u8 = 0xAA;

/// A meter address: 14 digits, most significant first when written, wire order kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 7]);

impl Address {
    pub const WILDCARD: Address = Address([0xAA; 7]);

    /// Parses the 14 digits as written (most significant first). Digits are BCD, but some
    /// vendors put hex letters in the high bytes (`"00000000EE0001"`), so hex is accepted.
    pub fn parse(s: &str) -> Result<Address, String> {
        let s = s.trim();
        if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "\"{s}\" is not a CJ/T 188 address: write its 14 (hex) digits, e.g. \"00000012345678\""
            ));
        }
        let mut a = [0u8; 7];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            a[6 - i] = u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
        }
        Ok(Address(a))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().rev() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub meter_type: u8,
    pub address: Address,
    pub control: u8,
    pub data: Vec<u8>,
}

impl Frame {
    /// Wire bytes with a two-byte wake-up preamble.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let len = u8::try_from(self.data.len())
            .map_err(|_| format!("{} data bytes do not fit one frame", self.data.len()))?;
        let mut out = vec![0xFE, 0xFE, 0x68, self.meter_type];
        out.extend_from_slice(&self.address.0);
        out.push(self.control);
        out.push(len);
        out.extend_from_slice(&self.data);
        let cs = super::dlt645::checksum(&out[2..]);
        out.push(cs);
        out.push(0x16);
        Ok(out)
    }
}

/// A read of `di` (sequence number `ser`).
pub fn read_request(meter_type: u8, address: Address, di: u16, ser: u8) -> Frame {
    let [lo, hi] = di.to_le_bytes();
    Frame {
        meter_type,
        address,
        control: READ_DATA,
        data: vec![lo, hi, ser],
    }
}

/// The broadcast "read address" request.
pub fn read_address_request(ser: u8) -> Frame {
    let [lo, hi] = DI_ADDRESS.to_le_bytes();
    Frame {
        meter_type: ANY_TYPE,
        address: Address::WILDCARD,
        control: READ_ADDRESS,
        data: vec![lo, hi, ser],
    }
}

/// What scanning a receive buffer found (as for DL/T 645).
pub type Scan = ScanOf<Frame>;
use super::dlt645::Scan as ScanOf;

/// Finds the next frame in `buf`.
pub fn scan(buf: &[u8]) -> Scan {
    let lead = match super::dlt645::frame_start(buf) {
        Ok(n) => n,
        Err(s) => return s,
    };
    let rest = &buf[lead..];
    if rest.len() < 11 {
        return ScanOf::Incomplete;
    }
    let len = usize::from(rest[10]);
    let total = 13 + len;
    if rest.len() < total {
        return ScanOf::Incomplete;
    }
    let cs = super::dlt645::checksum(&rest[..11 + len]);
    if rest[11 + len] != cs || rest[12 + len] != 0x16 {
        return ScanOf::Garbage {
            skip: lead + 1,
            why: if rest[12 + len] != 0x16 {
                "frame does not end with 0x16".into()
            } else {
                format!("bad checksum {:#04x}, expected {cs:#04x}", rest[11 + len])
            },
        };
    }
    let mut address = [0u8; 7];
    address.copy_from_slice(&rest[2..9]);
    ScanOf::Frame(
        Frame {
            meter_type: rest[1],
            address: Address(address),
            control: rest[9],
            data: rest[11..11 + len].to_vec(),
        },
        lead + total,
    )
}

/// A meter's answer to a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The data after DI and SER.
    Data(Vec<u8>),
    /// Abnormal answer with the meter's status byte.
    Abnormal(u8, String),
}

/// Interprets the answer to a read of `di`.
pub fn read_answer(di: u16, frame: &Frame) -> Result<Answer, String> {
    if frame.control & 0x40 != 0 {
        // The status byte closes the data (after DI and SER when the meter repeats them).
        let st = frame.data.last().copied().unwrap_or(0);
        return Ok(Answer::Abnormal(
            st,
            format!("meter answered abnormally (status {st:#04x})"),
        ));
    }
    if frame.data.len() < 3 {
        return Err(format!(
            "answer of {} bytes has no data identifier",
            frame.data.len()
        ));
    }
    let got = u16::from_le_bytes([frame.data[0], frame.data[1]]);
    if got != di {
        return Err(format!(
            "answer is for identifier {got:04X}, asked for {di:04X}"
        ));
    }
    Ok(Answer::Data(frame.data[3..].to_vec()))
}

/// The dimension of a CJ/T 188 unit code and the factor to this crate's canonical unit of that
/// dimension (energy GJ, power kW, volume m3, flow m3/h). Codes: CJ/T 188-2004 Table 4
/// "单位代号" (kept in CJ/T 188-2018).
pub fn unit(code: u8) -> Option<(Dimension, f64)> {
    use Dimension::*;
    Some(match code {
        0x01 => (Energy, 1e-9),   // J
        0x02 => (Energy, 3.6e-6), // Wh
        0x05 => (Energy, 3.6e-3), // kWh
        0x08 => (Energy, 3.6),    // MWh
        0x0A => (Energy, 360.0),  // MWh x 100
        0x0B => (Energy, 1e-6),   // kJ
        0x0E => (Energy, 1e-3),   // MJ
        0x11 => (Energy, 1.0),    // GJ
        0x13 => (Energy, 100.0),  // GJ x 100
        0x14 => (Power, 1e-3),    // W
        0x17 => (Power, 1.0),     // kW
        0x1A => (Power, 1e3),     // MW
        0x29 => (Volume, 1e-3),   // L
        0x2C => (Volume, 1.0),    // m3
        0x32 => (Flow, 1e-3),     // L/h
        0x35 => (Flow, 1.0),      // m3/h
        _ => return None,
    })
}

/// What a unit code measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Energy,
    Power,
    Volume,
    Flow,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn read_request_of_a_cold_water_meter() {
        // 68 10 44 33 22 11 00 33 78 01 03 1F 90 00 CS 16, CS = 0x80
        let a = Address::parse("78330011223344").unwrap();
        let b = read_request(0x10, a, 0x901F, 0).encode().unwrap();
        assert_eq!(
            b,
            vec![
                0xFE, 0xFE, 0x68, 0x10, 0x44, 0x33, 0x22, 0x11, 0x00, 0x33, 0x78, 0x01, 0x03, 0x1F,
                0x90, 0x00, 0x80, 0x16
            ]
        );
        assert_eq!(a.to_string(), "78330011223344");
    }

    #[test]
    fn answers_and_units() {
        let f = Frame {
            meter_type: 0x10,
            address: Address([1, 2, 3, 4, 5, 6, 7]),
            control: 0x81,
            data: vec![0x1F, 0x90, 0x00, 0x00, 0x77, 0x66, 0x55, 0x2C],
        };
        let Scan::Frame(g, _) = scan(&f.encode().unwrap()) else {
            panic!()
        };
        assert_eq!(
            read_answer(0x901F, &g),
            Ok(Answer::Data(vec![0x00, 0x77, 0x66, 0x55, 0x2C]))
        );
        assert!(read_answer(0x902F, &g).is_err());
        assert_eq!(unit(0x2C), Some((Dimension::Volume, 1.0)));
        assert_eq!(unit(0x05), Some((Dimension::Energy, 3.6e-3)));
        assert_eq!(unit(0x99), None);
    }

    proptest! {
        #[test]
        fn frames_round_trip(t: u8, addr: [u8; 7], control: u8, data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let f = Frame { meter_type: t, address: Address(addr), control, data };
            let wire = f.encode().unwrap();
            prop_assert_eq!(scan(&wire), ScanOf::Frame(f, wire.len()));
        }

        #[test]
        fn scanning_anything_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = buf;
            for _ in 0..b.len() + 1 {
                match scan(&b) {
                    ScanOf::Frame(_, used) => { b.drain(..used); }
                    ScanOf::Garbage { skip, .. } => { prop_assert!(skip > 0); b.drain(..skip.min(b.len())); }
                    ScanOf::Incomplete => break,
                }
            }
        }
    }
}
