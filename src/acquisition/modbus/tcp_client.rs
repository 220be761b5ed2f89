//! The Modbus TCP client of the poller: MBAP framing (Modbus Messaging on TCP/IP Implementation
//! Guide V1.0b, 3.1.3) for the two requests the poller sends, read holding registers (0x03) and
//! read input registers (0x04), behind tokio-modbus's [`Client`] trait, so the poller drives a TCP
//! device and a serial line through the same [`Context`].
//!
//! tokio-modbus's own TCP client frames with tokio-util's codec, which gives every connection
//! a read and a write buffer of 8 KiB (and a second read buffer while a response is in use):
//! about 24 KB of heap per device, 12 MB of the gateway's 21 MB of heap with 500 devices
//! (valgrind massif under `benches/modbus_load.rs`). A response is at most 260 bytes (the
//! MBAP header and a PDU of 253), so this client reads it into a buffer of that size held by the
//! request's future only, and keeps nothing between requests but the connection.
//!
//! A response is checked as tokio-modbus checks it, and stricter where a malformed answer would
//! otherwise reach the decoder: the protocol id must be 0, the length field 2..=254, the
//! transaction id and unit the request's, the function code the request's (or its exception,
//! 0x80 + code), the byte count twice the registers asked for and the data as long. Bytes after
//! the frame are dropped. Anything else is an `InvalidData` error ("invalid Modbus TCP
//! response: ..."), and the poller then drops the connection. A request abandoned before its
//! response was read whole (the poller's timeout) leaves the client unusable: the next request
//! fails at once instead of reading the rest of the old response.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Request, Response, Slave};

/// MBAP header: transaction id, protocol id, length, unit id.
const HEADER_LEN: usize = 7;
/// The largest Modbus TCP ADU: header and a PDU of 253 bytes.
const MAX_ADU: usize = 260;

/// Connects to a Modbus TCP device; requests go to `slave`.
pub async fn connect(addr: SocketAddr, slave: Slave) -> io::Result<Context> {
    let stream = TcpStream::connect(addr).await?;
    // One request in flight and written in one piece: nothing for Nagle to gather.
    stream.set_nodelay(true)?;
    let client: Box<dyn Client> = Box::new(TcpClient {
        stream: Some(stream),
        next_transaction: 0,
        unit: slave.into(),
        in_flight: false,
    });
    Ok(Context::from(client))
}

#[derive(Debug)]
struct TcpClient {
    stream: Option<TcpStream>,
    next_transaction: u16,
    unit: u8,
    /// A request was sent and its response not read whole.
    in_flight: bool,
}

impl SlaveContext for TcpClient {
    fn set_slave(&mut self, slave: Slave) {
        self.unit = slave.into();
    }
}

fn invalid(message: String) -> tokio_modbus::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("invalid Modbus TCP response: {message}"),
    )
    .into()
}

/// The request frame of a register read.
fn encode(transaction: u16, unit: u8, function: u8, address: u16, count: u16) -> [u8; 12] {
    let [t0, t1] = transaction.to_be_bytes();
    let [a0, a1] = address.to_be_bytes();
    let [c0, c1] = count.to_be_bytes();
    [t0, t1, 0, 0, 0, 6, unit, function, a0, a1, c0, c1]
}

/// The length of the response whose first bytes are `buf`: the header's length while fewer than
/// its 7 bytes have arrived, then the whole frame's; an error when the header is not a Modbus TCP
/// response's.
fn frame_len(buf: &[u8]) -> Result<usize, tokio_modbus::Error> {
    if buf.len() < HEADER_LEN {
        return Ok(HEADER_LEN);
    }
    let protocol = u16::from_be_bytes([buf[2], buf[3]]);
    if protocol != 0 {
        return Err(invalid(format!(
            "protocol id {protocol} in the response, not 0 (Modbus)"
        )));
    }
    let len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if !(2..=MAX_ADU - HEADER_LEN + 1).contains(&len) {
        return Err(invalid(format!(
            "length field {len} in the response, not 2..=254"
        )));
    }
    Ok(HEADER_LEN - 1 + len)
}

/// The registers (or the exception) in a whole response `frame` to the request of `transaction`,
/// `unit`, `function` for `count` registers.
fn decode(
    frame: &[u8],
    transaction: u16,
    unit: u8,
    function: u8,
    count: u16,
) -> Result<Result<Vec<u16>, ExceptionCode>, tokio_modbus::Error> {
    let got_transaction = u16::from_be_bytes([frame[0], frame[1]]);
    let got_unit = frame[6];
    if got_transaction != transaction || got_unit != unit {
        return Err(invalid(format!(
            "for transaction {got_transaction}, unit {got_unit}; the request was transaction {transaction}, unit {unit}"
        )));
    }
    let pdu = &frame[HEADER_LEN..];
    match pdu {
        // As tokio-modbus: bytes after the exception code are ignored.
        [f, code, ..] if *f == function | 0x80 => Ok(Err(ExceptionCode::new(*code))),
        [f, ..] if *f != function => Err(invalid(format!(
            "function {f:#04x} in the response to function {function:#04x}"
        ))),
        [_, n, data @ ..]
            if usize::from(*n) == data.len() && data.len() == 2 * usize::from(count) =>
        {
            Ok(Ok(data
                .chunks_exact(2)
                .map(|w| u16::from_be_bytes([w[0], w[1]]))
                .collect()))
        }
        [_, n, data @ ..] => Err(invalid(format!(
            "asked {count} registers, the response has a byte count of {n} and {} bytes of data",
            data.len()
        ))),
        _ => Err(invalid(format!("a PDU of {} byte(s)", pdu.len()))),
    }
}

#[async_trait::async_trait]
impl Client for TcpClient {
    async fn call(&mut self, request: Request<'_>) -> tokio_modbus::Result<Response> {
        let (function, address, count) = match request {
            Request::ReadHoldingRegisters(a, c) => (0x03, a, c),
            Request::ReadInputRegisters(a, c) => (0x04, a, c),
            other => {
                let code = other.function_code();
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "the poller's Modbus TCP client does not send {code:?} (function {:#04x})",
                        code.value()
                    ),
                )
                .into());
            }
        };
        if self.in_flight {
            // The rest of an abandoned response may still arrive: never read it as this one's.
            self.stream = None;
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "disconnected").into());
        };
        self.in_flight = true;
        let transaction = self.next_transaction;
        self.next_transaction = transaction.wrapping_add(1);
        stream
            .write_all(&encode(transaction, self.unit, function, address, count))
            .await?;
        let mut buf = [0u8; MAX_ADU];
        let mut have = 0;
        loop {
            let need = frame_len(&buf[..have])?;
            if have >= need {
                // Bytes after the frame (none from a working device) are dropped, as
                // tokio-modbus clears its read buffer before each request.
                self.in_flight = false;
                let registers = decode(&buf[..need], transaction, self.unit, function, count)?;
                return Ok(registers.map(|words| match function {
                    0x03 => Response::ReadHoldingRegisters(words),
                    _ => Response::ReadInputRegisters(words),
                }));
            }
            let n = stream.read(&mut buf[have..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {have} of the response's {need} bytes"),
                )
                .into());
            }
            have += n;
        }
    }

    async fn disconnect(&mut self) -> io::Result<()> {
        match self.stream.take() {
            Some(mut stream) => stream.shutdown().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn a_request_frame_is_the_mbap_header_and_the_pdu() {
        assert_eq!(
            encode(0x0102, 7, 0x03, 0x9C41, 2),
            [0x01, 0x02, 0, 0, 0, 6, 7, 0x03, 0x9C, 0x41, 0, 2]
        );
    }

    #[test]
    fn responses_are_checked_before_their_registers_are_used() {
        let ok = [0, 5, 0, 0, 0, 7, 1, 0x04, 4, 0x12, 0x34, 0xAB, 0xCD];
        assert_eq!(frame_len(&ok[..3]).unwrap(), 7);
        assert_eq!(frame_len(&ok).unwrap(), ok.len());
        assert_eq!(
            decode(&ok, 5, 1, 0x04, 2).unwrap(),
            Ok(vec![0x1234, 0xABCD])
        );
        // An exception answer.
        let exc = [0, 5, 0, 0, 0, 3, 1, 0x84, 0x02];
        assert_eq!(
            decode(&exc, 5, 1, 0x04, 2).unwrap(),
            Err(ExceptionCode::IllegalDataAddress)
        );
        let err = |frame: &[u8], count| decode(frame, 5, 1, 0x04, count).unwrap_err().to_string();
        // Another transaction, another unit, another function.
        assert!(err(&[0, 6, 0, 0, 0, 7, 1, 0x04, 4, 0, 0, 0, 0], 2).contains("transaction 6"));
        assert!(err(&[0, 5, 0, 0, 0, 7, 2, 0x04, 4, 0, 0, 0, 0], 2).contains("unit 2"));
        assert!(err(&[0, 5, 0, 0, 0, 7, 1, 0x03, 4, 0, 0, 0, 0], 2).contains("function 0x03"));
        // A byte count that is not the registers asked for, or not the data that follows.
        assert!(err(&ok, 3).contains("asked 3 registers"));
        assert!(err(&[0, 5, 0, 0, 0, 7, 1, 0x04, 6, 0, 0, 0, 0], 2).contains("byte count of 6"));
        assert!(err(&[0, 5, 0, 0, 0, 2, 1, 0x04], 2).contains("PDU of 1"));
        // Headers that are not Modbus TCP.
        assert!(frame_len(&[0, 5, 0, 1, 0, 7, 1])
            .unwrap_err()
            .to_string()
            .contains("protocol id 1"));
        for len in [0u8, 1] {
            let e = frame_len(&[0, 5, 0, 0, 0, len, 1]).unwrap_err().to_string();
            assert!(e.contains("length field"), "{e}");
        }
        assert!(frame_len(&[0, 5, 0, 0, 0xFF, 0xFF, 1])
            .unwrap_err()
            .to_string()
            .contains("65535"));
        assert_eq!(frame_len(&[0, 5, 0, 0, 0, 254, 1]).unwrap(), MAX_ADU);
        assert!(frame_len(&[0, 5, 0, 0, 0, 255, 1]).is_err());
        // Every message says what it is.
        assert!(err(&ok, 3).starts_with("invalid Modbus TCP response: "));
    }

    /// A server that answers each request with `answer(request)`, written in pieces of
    /// `piece` bytes, and hands each request it read to `seen`.
    async fn server(
        piece: usize,
        answer: impl Fn(&[u8; 12]) -> Vec<u8> + Send + 'static,
    ) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<[u8; 12]>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 12];
            while s.read_exact(&mut req).await.is_ok() {
                let _ = seen.send(req);
                for chunk in answer(&req).chunks(piece) {
                    s.write_all(chunk).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        });
        (addr, requests)
    }

    /// The answer of a meter whose every register holds its own address.
    fn registers_hold_their_address(req: &[u8; 12]) -> Vec<u8> {
        let start = u16::from_be_bytes([req[8], req[9]]);
        let count = u16::from_be_bytes([req[10], req[11]]);
        let mut out = vec![req[0], req[1], 0, 0];
        out.extend_from_slice(&(3 + 2 * count).to_be_bytes());
        out.extend_from_slice(&[req[6], req[7], (2 * count) as u8]);
        for r in start..start + count {
            out.extend_from_slice(&r.to_be_bytes());
        }
        out
    }

    /// `fut` within 10 s: a client that waits for bytes that never come fails the test.
    async fn soon<T>(fut: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(10), fut)
            .await
            .expect("the client hung")
    }

    #[tokio::test]
    async fn registers_are_read_from_responses_that_arrive_in_pieces() {
        use tokio_modbus::client::Reader;
        // The answer comes a byte or three at a time, or whole.
        for piece in [1, 3, 260] {
            let (addr, _) = server(piece, registers_hold_their_address).await;
            let mut ctx = soon(connect(addr, Slave(9))).await.unwrap();
            for start in [0u16, 100, 40_000] {
                let regs = soon(ctx.read_holding_registers(start, 125)).await;
                assert_eq!(
                    regs.unwrap().unwrap(),
                    (start..start + 125).collect::<Vec<_>>(),
                    "piece {piece}"
                );
                let regs = soon(ctx.read_input_registers(start, 2)).await;
                assert_eq!(regs.unwrap().unwrap(), vec![start, start + 1]);
            }
        }
    }

    #[tokio::test]
    async fn each_request_has_the_next_transaction_id_and_the_unit_set_last() {
        use tokio_modbus::client::Reader;
        let (addr, mut requests) = server(260, registers_hold_their_address).await;
        let stream = soon(TcpStream::connect(addr)).await.unwrap();
        let client: Box<dyn Client> = Box::new(TcpClient {
            stream: Some(stream),
            next_transaction: 0xFFFE,
            unit: 1,
            in_flight: false,
        });
        let mut ctx = Context::from(client);
        for (unit, transaction) in [(1u8, 0xFFFEu16), (7, 0xFFFF), (7, 0), (255, 1)] {
            ctx.set_slave(Slave(unit));
            assert_eq!(
                soon(ctx.read_input_registers(3, 1)).await.unwrap(),
                Ok(vec![3])
            );
            let req = requests.recv().await.unwrap();
            assert_eq!(req, encode(transaction, unit, 0x04, 3, 1));
        }
    }

    #[tokio::test]
    async fn exceptions_mismatches_and_trailing_bytes_over_the_wire() {
        use tokio_modbus::client::Reader;
        // Request n: 0 an exception (with a byte after its code), 1 a good answer followed in
        // the same segment by garbage, 2 a good answer, 3 the answer to another transaction.
        let (addr, _) = server(260, |req| match req[1] {
            0 => vec![req[0], req[1], 0, 0, 0, 4, req[6], 0x83, 0x02, 0xEE],
            1 => [registers_hold_their_address(req), vec![0xDE, 0xAD]].concat(),
            2 => registers_hold_their_address(req),
            _ => {
                let mut other = registers_hold_their_address(req);
                other[1] ^= 0x40;
                other
            }
        })
        .await;
        let mut ctx = soon(connect(addr, Slave(1))).await.unwrap();
        let r = soon(ctx.read_holding_registers(10, 2)).await.unwrap();
        assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
        let r = soon(ctx.read_holding_registers(10, 2)).await.unwrap();
        assert_eq!(r, Ok(vec![10, 11]));
        let r = soon(ctx.read_holding_registers(20, 1)).await.unwrap();
        assert_eq!(r, Ok(vec![20]));
        let e = soon(ctx.read_holding_registers(20, 1))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid Modbus TCP response: for transaction 67, unit 1; the request was transaction 3"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_request_abandoned_mid_response_leaves_the_client_unusable() {
        use tokio_modbus::client::Reader;
        // Nine bytes of an answer and no more: the caller gives up after 50 ms.
        let (addr, _) = server(260, |req| {
            let mut out = registers_hold_their_address(req);
            out.truncate(9);
            out
        })
        .await;
        let mut ctx = soon(connect(addr, Slave(1))).await.unwrap();
        let first = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            ctx.read_holding_registers(0, 4),
        )
        .await;
        assert!(first.is_err(), "{first:?}");
        let e = soon(ctx.read_holding_registers(0, 4))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("disconnected"), "{e}");
    }

    #[tokio::test]
    async fn a_closed_connection_and_an_unsupported_request_are_errors() {
        use tokio_modbus::client::{Reader, Writer};
        let (addr, _) = server(260, |_| Vec::new()).await;
        let mut ctx = soon(connect(addr, Slave(1))).await.unwrap();
        let e = soon(ctx.write_single_register(1, 2))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not send") && e.contains("0x06"), "{e}");
        // The server answers three bytes and closes the connection.
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut req = [0u8; 12];
                let _ = s.read_exact(&mut req).await;
                s.write_all(&[req[0], req[1], 0]).await.unwrap();
            });
            addr
        };
        let mut ctx = soon(connect(addr, Slave(1))).await.unwrap();
        let e = soon(ctx.read_holding_registers(0, 1))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("connection closed after 3 of the response's 7 bytes"),
            "{e}"
        );
    }
}
