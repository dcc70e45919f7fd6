//! llama-server on 127.0.0.1, for as long as a value holds it: the end-to-end peer of
//! `k2 bench` and the real server of the remote backend's tests (which include this file).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running llama-server, killed when dropped.
pub struct LlamaServer {
    child: Child,
    port: u16,
}

impl LlamaServer {
    /// Starts `bin` on a free loopback port with `model` and `args`, and waits (up to a
    /// minute) until it reports healthy.
    pub async fn start(bin: &Path, model: &Path, args: &[&str]) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("-m")
            .arg(model)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut server = LlamaServer { child, port };
        for _ in 0..600 {
            if server.status("/health").await == Some(200) {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("llama-server exited with {status}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("llama-server did not become healthy within a minute".into())
    }

    /// The OpenAI-compatible base URL (`http://127.0.0.1:PORT/v1`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The status of a plain GET of `path`, without a client library.
    async fn status(&self, path: &str) -> Option<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = format!("127.0.0.1:{}", self.port);
        let mut stream = tokio::net::TcpStream::connect(&host).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = vec![0u8; 64];
        let n = stream.read(&mut head).await.ok()?;
        String::from_utf8_lossy(&head[..n])
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
