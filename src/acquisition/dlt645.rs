//! DL/T 645-2007 and DL/T 645-1997 frames (multi-function watt-hour meter communication
//! protocol): `FE FE FE FE 68 A0..A5 68 C L DATA CS 16`. The address is 12 BCD digits, least
//! significant byte first; every data byte travels with 0x33 added; CS is the sum of the bytes
//! from the first 0x68 to the end of the data, modulo 256 (DL/T 645-2007 clause 4 "帧格式").
//!
//! Read data: 2007 C = 0x11 with a 4-byte data identifier (DI0 first), normal answer 0x91,
//! abnormal answer 0xD1 with one error byte; 1997 C = 0x01 with a 2-byte identifier, answers
//! 0x81 / 0xC1. Read address (2007 only): C = 0x13 to the wildcard address AAAAAAAAAAAA,
//! answer 0x93 carrying the address.

use std::fmt;

/// Which edition of the standard a line speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2007,
    V1997,
}

impl Version {
    /// Control code of "read data".
    pub fn read_control(self) -> u8 {
        match self {
            Version::V2007 => 0x11,
            Version::V1997 => 0x01,
        }
    }

    /// Bytes of a data identifier.
    pub fn di_len(self) -> usize {
        match self {
            Version::V2007 => 4,
            Version::V1997 => 2,
        }
    }
}

/// Control code of "read communication address" (2007).
pub const READ_ADDRESS: u8 = 0x13;

/// The wake-up preamble sent before every request.
pub const PREAMBLE: [u8; 4] = [0xFE; 4];

/// A meter address: 12 decimal digits as printed on the nameplate, kept in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 6]);

impl Address {
    /// The wildcard address every meter answers (point-to-point, e.g. address discovery).
    pub const WILDCARD: Address = Address([0xAA; 6]);

    /// Parses 12 decimal digits, most significant first (`"000012345678"`).
    pub fn parse(s: &str) -> Result<Address, String> {
        let s = s.trim();
        if s.len() != 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "\"{s}\" is not a DL/T 645 address: write the 12 digits of the nameplate, e.g. \"000012345678\""
            ));
        }
        let mut a = [0u8; 6];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            a[5 - i] = ((pair[0] - b'0') << 4) | (pair[1] - b'0');
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

/// One frame, data without the 0x33 offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub address: Address,
    pub control: u8,
    pub data: Vec<u8>,
}

impl Frame {
    /// Wire bytes, preamble included.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let len = u8::try_from(self.data.len())
            .map_err(|_| format!("{} data bytes do not fit one frame", self.data.len()))?;
        let mut out = Vec::with_capacity(16 + self.data.len());
        out.extend_from_slice(&PREAMBLE);
        let start = out.len();
        out.push(0x68);
        out.extend_from_slice(&self.address.0);
        out.push(0x68);
        out.push(self.control);
        out.push(len);
        out.extend(self.data.iter().map(|b| b.wrapping_add(0x33)));
        let cs = checksum(&out[start..]);
        out.push(cs);
        out.push(0x16);
        Ok(out)
    }
}

/// The modulo-256 sum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// A read request for data identifier `di` (2007: 4 bytes, 1997: the low 2 bytes).
pub fn read_request(version: Version, address: Address, di: u32) -> Frame {
    let di = di.to_le_bytes();
    Frame {
        address,
        control: version.read_control(),
        data: di[..version.di_len()].to_vec(),
    }
}

/// The broadcast "read communication address" request (2007).
pub fn read_address_request() -> Frame {
    Frame {
        address: Address::WILDCARD,
        control: READ_ADDRESS,
        data: Vec::new(),
    }
}

/// What scanning a receive buffer found (for the frames of either protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan<F = Frame> {
    /// A whole, valid frame, and how many bytes of the buffer it (and what preceded it) used.
    Frame(F, usize),
    /// Bytes that can never start a frame (line noise, a frame with a bad checksum or end):
    /// drop `skip` bytes and scan again.
    Garbage { skip: usize, why: String },
    /// Not enough bytes yet.
    Incomplete,
}

/// Skips the wake-up bytes (0xFE) before a frame: the number of them when a frame start
/// (0x68) follows, else what to do with the buffer.
pub fn frame_start<F>(buf: &[u8]) -> Result<usize, Scan<F>> {
    let lead = buf.iter().take_while(|b| **b == 0xFE).count();
    let rest = &buf[lead..];
    match rest.first() {
        None => Err(Scan::Incomplete),
        Some(0x68) => Ok(lead),
        Some(_) => Err(Scan::Garbage {
            skip: lead
                + rest
                    .iter()
                    .position(|b| *b == 0x68 || *b == 0xFE)
                    .unwrap_or(rest.len())
                    .max(1),
            why: "bytes outside a frame".into(),
        }),
    }
}

/// Finds the next frame in `buf`. Wake-up bytes (0xFE) before a frame are not garbage.
pub fn scan(buf: &[u8]) -> Scan {
    let lead = match frame_start(buf) {
        Ok(n) => n,
        Err(s) => return s,
    };
    let rest = &buf[lead..];
    if rest.len() < 10 {
        return Scan::Incomplete;
    }
    if rest[7] != 0x68 {
        return Scan::Garbage {
            skip: lead + 1,
            why: "no second 0x68 after the address".into(),
        };
    }
    let len = usize::from(rest[9]);
    let total = 12 + len;
    if rest.len() < total {
        return Scan::Incomplete;
    }
    let cs = checksum(&rest[..10 + len]);
    if rest[10 + len] != cs || rest[11 + len] != 0x16 {
        return Scan::Garbage {
            skip: lead + 1,
            why: if rest[11 + len] != 0x16 {
                "frame does not end with 0x16".into()
            } else {
                format!("bad checksum {:#04x}, expected {cs:#04x}", rest[10 + len])
            },
        };
    }
    let mut address = [0u8; 6];
    address.copy_from_slice(&rest[1..7]);
    Scan::Frame(
        Frame {
            address: Address(address),
            control: rest[8],
            data: rest[10..10 + len]
                .iter()
                .map(|b| b.wrapping_sub(0x33))
                .collect(),
        },
        lead + total,
    )
}

/// A meter's answer to a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The value bytes of the identifier asked for (identifier stripped).
    Data(Vec<u8>),
    /// An abnormal answer: the meter's error byte, explained.
    Abnormal(u8, String),
}

/// True when `frame` is an answer (from a slave) to a request with control code `request`.
pub fn answers(frame: &Frame, request: u8) -> bool {
    frame.control & 0x80 != 0 && frame.control & 0x1F == request & 0x1F
}

/// Interprets the answer to a read of `di`.
pub fn read_answer(version: Version, di: u32, frame: &Frame) -> Result<Answer, String> {
    if frame.control & 0x40 != 0 {
        let err = frame.data.first().copied().unwrap_or(0);
        return Ok(Answer::Abnormal(err, explain_error(version, err)));
    }
    if frame.control & 0x20 != 0 {
        return Err(
            "the meter announces a follow-up frame, which a single item never needs".into(),
        );
    }
    let n = version.di_len();
    if frame.data.len() < n {
        return Err(format!(
            "answer of {} bytes has no data identifier",
            frame.data.len()
        ));
    }
    let want = &di.to_le_bytes()[..n];
    if &frame.data[..n] != want {
        return Err(format!(
            "answer is for identifier {}, asked for {}",
            hex_di(&frame.data[..n]),
            hex_di(want)
        ));
    }
    Ok(Answer::Data(frame.data[n..].to_vec()))
}

fn hex_di(le: &[u8]) -> String {
    le.iter().rev().map(|b| format!("{b:02X}")).collect()
}

/// The error byte of an abnormal answer in words (2007: clause 7.1 "错误信息字 ERR";
/// 1997: clause 3 "异常应答").
pub fn explain_error(version: Version, err: u8) -> String {
    let names: [&str; 7] = match version {
        Version::V2007 => [
            "other error",
            "no such data (identifier not supported)",
            "password error / not authorised",
            "baud rate cannot be changed",
            "too many year time zones",
            "too many day time periods",
            "too many tariffs",
        ],
        Version::V1997 => [
            "illegal data",
            "data identifier error",
            "password error",
            "reserved",
            "too many year time zones",
            "too many day time periods",
            "too many tariffs",
        ],
    };
    let set: Vec<&str> = (0..7)
        .filter(|b| err & (1 << b) != 0)
        .map(|b| names[b])
        .collect();
    format!(
        "meter answered abnormally (error byte {err:#04x}: {})",
        if set.is_empty() {
            "no reason given".into()
        } else {
            set.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn read_request_of_the_standard() {
        // Forward active total energy (00010000) of meter 000012345678:
        // 68 78 56 34 12 00 00 68 11 04 33 33 34 33 CS 16
        let f = read_request(
            Version::V2007,
            Address::parse("000012345678").unwrap(),
            0x0001_0000,
        );
        let b = f.encode().unwrap();
        assert_eq!(
            &b[..16],
            &[
                0xFE, 0xFE, 0xFE, 0xFE, 0x68, 0x78, 0x56, 0x34, 0x12, 0x00, 0x00, 0x68, 0x11, 0x04,
                0x33, 0x33
            ]
        );
        assert_eq!(&b[16..18], &[0x34, 0x33]);
        let cs = b[4..18].iter().fold(0u8, |a, x| a.wrapping_add(*x));
        assert_eq!(b[18], cs);
        assert_eq!(b[19], 0x16);
        // 1997: 9010 with C = 01, two identifier bytes: 10+33, 90+33
        let f = read_request(Version::V1997, Address([0x11; 6]), 0x9010);
        assert_eq!(f.control, 0x01);
        assert_eq!(f.encode().unwrap()[14..16], [0x43, 0xC3]);
    }

    #[test]
    fn scans_a_normal_and_an_abnormal_answer() {
        let a = Address::parse("000012345678").unwrap();
        let ok = Frame {
            address: a,
            control: 0x91,
            data: vec![0x00, 0x00, 0x01, 0x00, 0x78, 0x56, 0x34, 0x12],
        };
        let mut wire = ok.encode().unwrap();
        let n = wire.len();
        match scan(&wire) {
            Scan::Frame(f, used) => {
                assert_eq!(used, n);
                assert_eq!(
                    read_answer(Version::V2007, 0x0001_0000, &f),
                    Ok(Answer::Data(vec![0x78, 0x56, 0x34, 0x12]))
                );
                assert!(read_answer(Version::V2007, 0x0002_0000, &f).is_err());
                assert!(answers(&f, 0x11));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(scan(&wire[..n - 1]), Scan::Incomplete);
        wire[n - 2] ^= 1;
        assert!(matches!(scan(&wire), Scan::Garbage { skip: 5, .. }));
        let bad = Frame {
            address: a,
            control: 0xD1,
            data: vec![0x02],
        };
        let Scan::Frame(f, _) = scan(&bad.encode().unwrap()) else {
            panic!()
        };
        match read_answer(Version::V2007, 0x0001_0000, &f).unwrap() {
            Answer::Abnormal(2, why) => assert!(why.contains("no such data"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn addresses_print_as_on_the_nameplate() {
        let a = Address::parse("202411300001").unwrap();
        assert_eq!(a.0, [0x01, 0x00, 0x30, 0x11, 0x24, 0x20]);
        assert_eq!(a.to_string(), "202411300001");
        assert!(Address::parse("2024113000").is_err());
        assert!(Address::parse("20241130000A").is_err());
    }

    proptest! {
        #[test]
        fn frames_round_trip(addr: [u8; 6], control: u8, data in proptest::collection::vec(any::<u8>(), 0..200), noise in proptest::collection::vec(any::<u8>(), 0..8)) {
            let f = Frame { address: Address(addr), control, data };
            let wire = f.encode().unwrap();
            prop_assert_eq!(scan(&wire), Scan::Frame(f.clone(), wire.len()));
            // noise before a frame is skipped, never taken for it, and never panics
            let mut buf: Vec<u8> = noise.into_iter().filter(|b| *b != 0x68).collect();
            buf.extend_from_slice(&wire);
            let mut found = None;
            for _ in 0..buf.len() + 1 {
                match scan(&buf) {
                    Scan::Frame(g, used) => { found = Some(g); buf.drain(..used); break; }
                    Scan::Garbage { skip, .. } => { buf.drain(..skip); }
                    Scan::Incomplete => break,
                }
            }
            prop_assert_eq!(found, Some(f));
        }

        #[test]
        fn scanning_anything_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = buf;
            for _ in 0..b.len() + 1 {
                match scan(&b) {
                    Scan::Frame(_, used) => { b.drain(..used); }
                    Scan::Garbage { skip, .. } => { prop_assert!(skip > 0); b.drain(..skip.min(b.len())); }
                    Scan::Incomplete => break,
                }
            }
        }
    }
}
