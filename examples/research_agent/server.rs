//! A tiny static file server on 127.0.0.1 for the research agent's offline document set.
//!
//! It serves the files of one directory (no subdirectories, no `..`), answers each request
//! and closes the connection, and logs the paths asked for so callers can see what was read.
//! A missing page gets a 404 whose body is the index, so the reader can find its way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running document server.
pub struct DocServer {
    /// Where it listens (always loopback).
    pub addr: SocketAddr,
    /// Paths requested so far, in order.
    pub hits: Arc<Mutex<Vec<String>>>,
}

impl DocServer {
    /// Serves `dir` on an ephemeral loopback port until the runtime shuts down.
    pub async fn start(dir: impl Into<PathBuf>) -> std::io::Result<DocServer> {
        let dir = dir.into();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(Mutex::new(Vec::new()));
        let log = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (dir, log) = (dir.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = answer(stream, &dir, &log).await;
                });
            }
        });
        Ok(DocServer { addr, hits })
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }
}

async fn answer(
    mut stream: TcpStream,
    dir: &Path,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf));
        let n = read.await.map_err(|_| std::io::ErrorKind::TimedOut)??;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        // Not HTTP (a TLS handshake, say): close now instead of waiting for a header end.
        if !head.starts_with(&b"GET /"[..head.len().min(5)]) {
            return stream.shutdown().await;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or("/");
    if let Ok(mut hits) = log.lock() {
        hits.push(path.to_string());
    }
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        name => name,
    };
    let safe = !name.contains('/') && !name.contains("..") && !name.contains('\\');
    let body = match safe {
        true => tokio::fs::read(dir.join(name)).await.ok(),
        false => None,
    };
    // A helpful 404, as good sites have: the index, so a reader can find the way.
    let (status, kind, body) = match body {
        Some(b) => ("200 OK", content_type(name), b),
        None => match tokio::fs::read(dir.join("index.html")).await {
            Ok(index) => ("404 Not Found", "text/html", index),
            Err(_) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        },
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html",
        Some("json") => "application/json",
        _ => "text/plain",
    }
}
