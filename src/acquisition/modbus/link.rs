//! How a poller reaches its devices: a TCP connection per Modbus TCP device, or one shared line
//! (RTU on a serial port, or RTU frames through a TCP connection to a serial device server).

use std::io;
use std::time::Duration;

use tokio::time::timeout;
use tokio_modbus::client::Context;
use tokio_modbus::Slave;

use crate::acquisition::config::{BusConfig, BusTransport, Parity};

/// Serial line settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSettings {
    pub port: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
}

/// A transport to one or more Modbus devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Modbus TCP (MBAP framing) to `host:port`.
    Tcp(String),
    /// RTU framing over a TCP connection to `host:port`.
    RtuOverTcp(String),
    /// RTU on a local serial port.
    Rtu(SerialSettings),
}

impl Link {
    /// The link of a `[[buses]]` entry (which the configuration check has validated).
    pub fn from_bus(bus: &BusConfig) -> Link {
        match bus.transport {
            BusTransport::RtuOverTcp => Link::RtuOverTcp(bus.address.clone().unwrap_or_default()),
            BusTransport::Rtu => Link::Rtu(SerialSettings {
                port: bus.port.clone().unwrap_or_default(),
                baud: bus.baud,
                parity: bus.parity,
                data_bits: bus.data_bits,
                stop_bits: bus.stop_bits,
            }),
        }
    }

    /// Human-readable description for logs.
    pub fn describe(&self) -> String {
        match self {
            Link::Tcp(a) => format!("modbus tcp {a}"),
            Link::RtuOverTcp(a) => format!("rtu over tcp {a}"),
            Link::Rtu(s) => format!(
                "rtu {} {} {}{}{}",
                s.port,
                s.baud,
                s.data_bits,
                match s.parity {
                    Parity::None => 'N',
                    Parity::Even => 'E',
                    Parity::Odd => 'O',
                },
                s.stop_bits
            ),
        }
    }

    /// True when frames need the RTU silent interval between them.
    pub fn is_rtu(&self) -> bool {
        !matches!(self, Link::Tcp(_))
    }

    /// Silence required between RTU frames: 3.5 character times (11 bits each), and at least
    /// 1.75 ms as the Modbus serial line specification fixes for rates above 19200 baud.
    pub fn inter_frame_gap(&self) -> Duration {
        match self {
            Link::Tcp(_) => Duration::ZERO,
            Link::RtuOverTcp(_) => Duration::from_micros(1750),
            Link::Rtu(s) => {
                let char_us = 11_000_000u64 / u64::from(s.baud.max(1));
                Duration::from_micros((char_us * 7 / 2).max(1750))
            }
        }
    }

    /// Opens the transport within `limit`.
    pub async fn connect(&self, unit: u8, limit: Duration) -> io::Result<Context> {
        let slave = Slave(unit);
        let fut = async {
            match self {
                Link::Tcp(addr) => {
                    let sock = resolve(addr).await?;
                    super::tcp_client::connect(sock, slave).await
                }
                Link::RtuOverTcp(addr) => {
                    let sock = resolve(addr).await?;
                    let stream = tokio::net::TcpStream::connect(sock).await?;
                    stream.set_nodelay(true)?;
                    Ok(tokio_modbus::client::rtu::attach_slave(stream, slave))
                }
                Link::Rtu(s) => Ok(tokio_modbus::client::rtu::attach_slave(
                    open_serial(s)?,
                    slave,
                )),
            }
        };
        match timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {limit:?}"),
            )),
        }
    }

    /// Opens the line as a plain byte stream within `limit` (for protocols other than Modbus on
    /// a serial port or through a serial device server).
    pub async fn open_stream(&self, limit: Duration) -> io::Result<Box<dyn ByteStream>> {
        let fut = async {
            match self {
                Link::Tcp(addr) | Link::RtuOverTcp(addr) => {
                    let stream = tokio::net::TcpStream::connect(resolve(addr).await?).await?;
                    stream.set_nodelay(true)?;
                    Ok(Box::new(stream) as Box<dyn ByteStream>)
                }
                Link::Rtu(s) => Ok(Box::new(open_serial(s)?) as Box<dyn ByteStream>),
            }
        };
        match timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {limit:?}"),
            )),
        }
    }
}

/// A duplex byte stream: a serial port or a TCP connection.
pub trait ByteStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ByteStream for T {}

fn open_serial(s: &SerialSettings) -> io::Result<tokio_serial::SerialStream> {
    let builder = tokio_serial::new(&s.port, s.baud)
        .parity(match s.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .data_bits(if s.data_bits == 7 {
            tokio_serial::DataBits::Seven
        } else {
            tokio_serial::DataBits::Eight
        })
        .stop_bits(if s.stop_bits == 2 {
            tokio_serial::StopBits::Two
        } else {
            tokio_serial::StopBits::One
        });
    tokio_serial::SerialStream::open(&builder)
        .map_err(|e| io::Error::other(format!("cannot open serial port {}: {e}", s.port)))
}

async fn resolve(addr: &str) -> io::Result<std::net::SocketAddr> {
    tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| io::Error::other(format!("{addr} resolves to no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inter_frame_gap_follows_the_baud_rate() {
        let rtu = |baud| {
            Link::Rtu(SerialSettings {
                port: "x".into(),
                baud,
                parity: Parity::None,
                data_bits: 8,
                stop_bits: 1,
            })
        };
        // 9600 baud: 11 bits = 1145 us per character, 3.5 characters = 4.0 ms
        assert_eq!(rtu(9600).inter_frame_gap(), Duration::from_micros(4007));
        // above 19200 baud the fixed 1.75 ms applies
        assert_eq!(rtu(115_200).inter_frame_gap(), Duration::from_micros(1750));
        assert_eq!(Link::Tcp("h:1".into()).inter_frame_gap(), Duration::ZERO);
    }
}
