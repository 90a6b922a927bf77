//! A minimal HTTP/1.1 client over tokio's TcpStream: one request at a time on a keep-alive
//! connection (no pipelining), responses framed by `Content-Length`. Just enough for the
//! benchmarks, with as little overhead as possible.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// A complete response: status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned integer after `"key":` in a flat JSON text (first occurrence).
pub fn json_u64(text: &[u8], key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let at = find(text, pat.as_bytes())? + pat.len();
    let digits = &text[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// The string after `"key":"` in a flat JSON text.
pub fn json_str(text: &[u8], key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let at = find(text, pat.as_bytes())? + pat.len();
    let end = text[at..].iter().position(|&b| b == b'"')?;
    Some(String::from_utf8_lossy(&text[at..at + end]).into_owned())
}

impl Conn {
    pub async fn connect(port: u16) -> Result<Conn, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    pub async fn send(&mut self, req: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(req)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads one response. Bodies without `Content-Length` are not supported (not needed).
    pub async fn read_reply(&mut self) -> Result<Reply, String> {
        let mut scanned = 0;
        let head_end = loop {
            if let Some(i) = find(&self.buf[scanned..], b"\r\n\r\n") {
                break scanned + i + 4;
            }
            scanned = self.buf.len().saturating_sub(3);
            self.fill().await?;
        };
        let head = &self.buf[..head_end];
        let status = std::str::from_utf8(head.get(9..12).unwrap_or(b""))
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| "malformed status line".to_string())?;
        let mut len = 0usize;
        for line in head.split(|&b| b == b'\n') {
            if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
                len = std::str::from_utf8(&line[15..])
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| "bad Content-Length".to_string())?;
            }
        }
        while self.buf.len() < head_end + len {
            self.fill().await?;
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Ok(Reply { status, body })
    }

    pub async fn request(&mut self, req: &[u8]) -> Result<Reply, String> {
        self.send(req).await?;
        self.read_reply().await
    }

    /// Reads the head of a response whose body is a stream (SSE); returns the status and any
    /// body bytes that came with it.
    pub async fn read_stream_head(&mut self) -> Result<(u16, Vec<u8>), String> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let status = std::str::from_utf8(self.buf.get(9..12).unwrap_or(b""))
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        let rest = self.buf[head_end..].to_vec();
        self.buf.clear();
        Ok((status, rest))
    }

    async fn fill(&mut self) -> Result<(), String> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }
}
