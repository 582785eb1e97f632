//! A minimal WebSocket client transport (RFC 6455) for MQTT over WebSocket: the HTTP/1.1 upgrade with subprotocol
//! `mqtt`, then binary frames in both directions.
//!
//! MQTT over WebSocket treats the frames as one byte stream, so the generator puts whatever its write buffer
//! holds (a whole batch of pre-encoded packets) into one masked binary frame (up to [`MAX_FRAME`] bytes each), and
//! appends the payload of every data frame it reads to the MQTT read buffer as it arrives, without waiting for a
//! frame to be complete. Pings are answered with pongs; a close frame, a text frame, a masked server frame or
//! reserved bits end the connection with an error.
//!
//! The masking key of each frame comes from a xorshift generator seeded from the system's random source: the
//! RFC asks for unpredictable keys against proxies' cache poisoning, which does not arise on loopback, and a
//! per-frame system call would be the generator's largest per-batch cost.

use anyhow::{Context, anyhow, bail, ensure};
use bytes::{Buf, BytesMut};
use ring::rand::SecureRandom;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest frame the client writes; larger writes are split.
pub const MAX_FRAME: usize = 64 * 1024;

/// The largest HTTP response head accepted during the upgrade.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The GUID of the `Sec-WebSocket-Accept` computation (RFC 6455, section 1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One WebSocket connection over TCP.
#[derive(Debug)]
pub struct WsStream {
    stream: TcpStream,
    /// Bytes read from the socket, not yet unframed.
    raw: BytesMut,
    /// Framed bytes to write.
    out: BytesMut,
    /// Payload bytes left of the data frame being read.
    frame_left: u64,
    /// Masking key generator state.
    mask_state: u64,
}

impl WsStream {
    /// Opens the WebSocket on `stream` (already connected to `addr`): sends the upgrade request for `path` with
    /// subprotocol `mqtt` and checks the answer (101, `Upgrade`, `Sec-WebSocket-Accept`, the `mqtt` subprotocol).
    pub async fn handshake(mut stream: TcpStream, addr: SocketAddr, path: &str) -> anyhow::Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let mut nonce = [0u8; 16];
        rng.fill(&mut nonce).map_err(|_| anyhow!("no random bytes for the WebSocket key"))?;
        let mut seed = [0u8; 8];
        rng.fill(&mut seed).map_err(|_| anyhow!("no random bytes for the masking keys"))?;
        let key = base64(&nonce);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.context("sending the WebSocket upgrade")?;
        let mut raw = BytesMut::with_capacity(4096);
        let head_len = loop {
            if let Some(end) = find_head_end(&raw) {
                break end;
            }
            ensure!(raw.len() < MAX_RESPONSE_HEAD, "WebSocket upgrade: response head over {MAX_RESPONSE_HEAD} bytes");
            if stream.read_buf(&mut raw).await.context("reading the WebSocket upgrade response")? == 0 {
                bail!("WebSocket upgrade: the server closed the connection");
            }
        };
        let head = raw.split_to(head_len);
        check_upgrade_response(&head, &key)?;
        Ok(Self { stream, raw, out: BytesMut::with_capacity(64 * 1024), frame_left: 0, mask_state: seed_state(seed) })
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64*
        let mut x = self.mask_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.mask_state = x;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let b = v.to_le_bytes();
        [b[4], b[5], b[6], b[7]]
    }

    /// Writes `payload` as binary frames (one per [`MAX_FRAME`] bytes), after any pending control frames.
    pub async fn write(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        for chunk in payload.chunks(MAX_FRAME) {
            let key = self.next_mask();
            put_frame(&mut self.out, OP_BINARY, chunk, key);
        }
        self.flush_out().await
    }

    async fn flush_out(&mut self) -> anyhow::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await.context("writing to broker")?;
            self.out.clear();
        }
        Ok(())
    }

    /// Unframes what has been read so far into `dst`; returns the payload bytes added.
    fn unframe(&mut self, dst: &mut BytesMut) -> anyhow::Result<usize> {
        let mut pings = Vec::new();
        let added = unframe(&mut self.raw, &mut self.frame_left, dst, &mut pings)?;
        for ping in pings {
            let key = self.next_mask();
            put_frame(&mut self.out, OP_PONG, &ping, key);
        }
        Ok(added)
    }

    /// Reads until at least one payload byte has been added to `dst` (reading at most `limit` bytes from the
    /// socket per read if given); fails when the broker closed the connection or the WebSocket.
    pub async fn read(&mut self, dst: &mut BytesMut, limit: Option<usize>) -> anyhow::Result<usize> {
        loop {
            let added = self.unframe(dst)?;
            self.flush_out().await?;
            if added > 0 {
                return Ok(added);
            }
            self.raw.reserve(64 * 1024);
            let n = match limit {
                None => self.stream.read_buf(&mut self.raw).await,
                Some(limit) => (&mut self.stream).take(limit as u64).read_buf(&mut self.raw).await,
            }
            .context("reading from broker")?;
            if n == 0 {
                bail!("broker closed the connection");
            }
        }
    }

    /// Unframes whatever has already arrived, without waiting (0 when no payload has).
    pub fn try_read(&mut self, dst: &mut BytesMut) -> anyhow::Result<usize> {
        self.raw.reserve(64 * 1024);
        match self.stream.try_read_buf(&mut self.raw) {
            Ok(0) => bail!("broker closed the connection"),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("reading from broker"),
        }
        self.unframe(dst)
    }

    /// Sends a close frame (1000, normal closure) and shuts the TCP connection down; errors are ignored.
    pub async fn close(&mut self) {
        let key = self.next_mask();
        put_frame(&mut self.out, OP_CLOSE, &1000u16.to_be_bytes(), key);
        let _ = self.flush_out().await;
        let _ = self.stream.shutdown().await;
    }
}

fn seed_state(seed: [u8; 8]) -> u64 {
    // xorshift must not start at 0.
    u64::from_le_bytes(seed) | 1
}

/// The end of the HTTP head (the index after `\r\n\r\n`).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The `Sec-WebSocket-Accept` value for `key`.
pub fn accept_value(key: &str) -> String {
    let mut input = String::with_capacity(key.len() + ACCEPT_GUID.len());
    input.push_str(key);
    input.push_str(ACCEPT_GUID);
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, input.as_bytes());
    base64(digest.as_ref())
}

/// Checks the upgrade response head: status 101, `Upgrade: websocket`, `Connection: upgrade`, the accept value
/// of `key`, subprotocol `mqtt`.
fn check_upgrade_response(head: &[u8], key: &str) -> anyhow::Result<()> {
    let text = std::str::from_utf8(head).map_err(|_| anyhow!("WebSocket upgrade: response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1);
    ensure!(code == Some("101"), "WebSocket upgrade refused: {status:?}");
    let mut upgrade = false;
    let mut connection = false;
    let mut accept = None;
    let mut protocol = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "connection" => connection = value.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")),
            "sec-websocket-accept" => accept = Some(value.to_owned()),
            "sec-websocket-protocol" => protocol = Some(value.to_owned()),
            _ => {}
        }
    }
    ensure!(upgrade && connection, "WebSocket upgrade: no `Upgrade: websocket` / `Connection: upgrade` in {status:?}");
    ensure!(accept.as_deref() == Some(accept_value(key).as_str()), "WebSocket upgrade: wrong Sec-WebSocket-Accept");
    ensure!(
        protocol.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("mqtt")),
        "WebSocket upgrade: the server did not select subprotocol mqtt (got {protocol:?})"
    );
    Ok(())
}

/// Appends one masked frame (FIN set) with `opcode` and `payload` to `out`.
pub fn put_frame(out: &mut BytesMut, opcode: u8, payload: &[u8], key: [u8; 4]) {
    out.reserve(payload.len() + 14);
    out.extend_from_slice(&[0x80 | opcode]);
    let len = payload.len();
    if len < 126 {
        out.extend_from_slice(&[0x80 | len as u8]);
    } else if len <= usize::from(u16::MAX) {
        out.extend_from_slice(&[0x80 | 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[0x80 | 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    mask(&mut out[start..], key);
}

/// XORs `data` with the repeated masking `key` (8 bytes at a time).
pub fn mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// Moves the payload of data frames from `raw` to `dst` as far as it has arrived (`frame_left`: what is left of
/// the current data frame); collects ping payloads in `pings`. Returns the payload bytes added.
pub fn unframe(
    raw: &mut BytesMut,
    frame_left: &mut u64,
    dst: &mut BytesMut,
    pings: &mut Vec<Vec<u8>>,
) -> anyhow::Result<usize> {
    let mut added = 0;
    loop {
        if *frame_left > 0 {
            let n = usize::try_from(*frame_left).unwrap_or(usize::MAX).min(raw.len());
            if n == 0 {
                return Ok(added);
            }
            dst.extend_from_slice(&raw[..n]);
            raw.advance(n);
            *frame_left -= n as u64;
            added += n;
            continue;
        }
        if raw.len() < 2 {
            return Ok(added);
        }
        let (b0, b1) = (raw[0], raw[1]);
        ensure!(b0 & 0x70 == 0, "WebSocket frame with reserved bits set");
        ensure!(b1 & 0x80 == 0, "masked WebSocket frame from the server");
        let opcode = b0 & 0x0F;
        let (len, header) = match b1 & 0x7F {
            126 if raw.len() >= 4 => (u64::from(u16::from_be_bytes([raw[2], raw[3]])), 4),
            127 if raw.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&raw[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            126 | 127 => return Ok(added),
            n => (u64::from(n), 2),
        };
        match opcode {
            OP_BINARY | OP_CONTINUATION => {
                raw.advance(header);
                *frame_left = len;
            }
            OP_TEXT => bail!("text WebSocket frame from the server (MQTT uses binary frames)"),
            OP_CLOSE | OP_PING | OP_PONG => {
                ensure!(len <= 125, "WebSocket control frame of {len} bytes");
                let whole = header + len as usize;
                if raw.len() < whole {
                    return Ok(added);
                }
                let body = raw.split_to(whole).split_off(header);
                match opcode {
                    OP_CLOSE => {
                        let code = (body.len() >= 2).then(|| u16::from_be_bytes([body[0], body[1]]));
                        bail!("broker closed the WebSocket (code {code:?})");
                    }
                    OP_PING => pings.push(body.to_vec()),
                    _ => {}
                }
            }
            other => bail!("WebSocket frame with unknown opcode {other:#x}"),
        }
    }
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_accept_match_the_rfc() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // RFC 6455, section 1.3.
        assert_eq!(accept_value("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn masking_round_trips_at_every_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut masked = data.clone();
            mask(&mut masked, key);
            for (i, (m, d)) in masked.iter().zip(&data).enumerate() {
                assert_eq!(*m, d ^ key[i % 4]);
            }
            mask(&mut masked, key);
            assert_eq!(masked, data);
        }
    }

    #[test]
    fn frames_have_the_right_length_encodings() {
        for (len, header) in [(5usize, 2 + 4), (126, 4 + 4), (70_000, 10 + 4)] {
            let mut out = BytesMut::new();
            put_frame(&mut out, OP_BINARY, &vec![7u8; len], [1, 2, 3, 4]);
            assert_eq!(out.len(), header + len);
            assert_eq!(out[0], 0x82);
            assert_eq!(out[1] & 0x80, 0x80, "client frames are masked");
        }
    }

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        if payload.len() < 126 {
            f.push(payload.len() as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn unframes_split_frames_and_answers_pings() {
        let mut stream = server_frame(OP_BINARY, &[1, 2, 3]);
        stream.extend(server_frame(OP_PING, b"hi"));
        stream.extend(server_frame(OP_BINARY, &vec![9u8; 300]));
        // Feed one byte at a time: the payload must come out whole and in order.
        let (mut raw, mut left, mut dst, mut pings) = (BytesMut::new(), 0, BytesMut::new(), Vec::new());
        for b in stream {
            raw.extend_from_slice(&[b]);
            unframe(&mut raw, &mut left, &mut dst, &mut pings).unwrap();
        }
        assert_eq!(dst.len(), 303);
        assert_eq!(&dst[..3], &[1, 2, 3]);
        assert!(dst[3..].iter().all(|&b| b == 9));
        assert_eq!(pings, vec![b"hi".to_vec()]);
        assert!(raw.is_empty() && left == 0);
    }

    #[test]
    fn refuses_close_text_and_masked_frames() {
        for frame in [
            server_frame(OP_CLOSE, &1000u16.to_be_bytes()),
            server_frame(OP_TEXT, b"x"),
            vec![0x82, 0x81, 0, 0, 0, 0, 1],
        ] {
            let (mut raw, mut left, mut dst, mut pings) = (BytesMut::from(&frame[..]), 0, BytesMut::new(), Vec::new());
            assert!(unframe(&mut raw, &mut left, &mut dst, &mut pings).is_err());
        }
    }

    #[test]
    fn checks_the_upgrade_response() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
        check_upgrade_response(ok.as_bytes(), key).unwrap();
        assert!(check_upgrade_response(ok.replace("101", "400").as_bytes(), key).is_err());
        assert!(check_upgrade_response(ok.replace("Protocol: mqtt", "Protocol: soap").as_bytes(), key).is_err());
        assert!(check_upgrade_response(ok.replace("s3pP", "AAAA").as_bytes(), key).is_err());
        assert_eq!(find_head_end(ok.as_bytes()), Some(ok.len()));
    }
}
