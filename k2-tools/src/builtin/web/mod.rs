//! `web_fetch`: GET a URL and give the model readable text.
//!
//! Safe by default: only http(s); loopback, private, link-local, multicast and cloud-metadata
//! addresses are refused unless allow-listed, judged on the resolved IP address (the
//! connection is pinned to that address, so DNS cannot change its answer in between) and again
//! on every redirect; limits on bytes, time and redirects; output truncated with a marker.

mod html;
mod policy;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

pub use html::{extract, Page};
pub use policy::{decide, forbidden_reason, AllowList};

use crate::{ToolArgs, ToolContext, ToolError, ToolFn, ToolOutput};

/// Turns a host name into addresses. The default uses the system resolver; tests use a stub
/// that never touches the network.
#[async_trait]
pub trait Resolve: Send + Sync {
    /// The addresses of `host` for `port`.
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// Fetch a web page (or JSON, or text) by URL and return its readable text: the title, the
/// main content and the links in it.
#[derive(Debug, Deserialize, schemars::JsonSchema, crate::Tool)]
#[tool(name = "web_fetch")]
pub struct WebFetchArgs {
    /// The http(s) URL to fetch.
    // The pattern also goes into the call grammar, so even a small model writes a URL.
    #[schemars(regex(pattern = r#"^https?://[^ "\\]{1,1000}$"#))]
    pub url: String,
}

/// The `web_fetch` tool and its limits.
#[derive(Clone)]
pub struct WebFetch {
    allow: AllowList,
    resolver: Arc<dyn Resolve>,
    /// Largest body read, in bytes; the rest is cut off (and said so).
    pub max_bytes: usize,
    /// Longest text given to the model, in characters.
    pub max_chars: usize,
    /// Time for the whole fetch, redirects included.
    pub timeout: Duration,
    /// Redirects followed at most.
    pub max_redirects: usize,
}

impl std::fmt::Debug for WebFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebFetch")
            .field("allow", &self.allow)
            .field("max_bytes", &self.max_bytes)
            .field("max_chars", &self.max_chars)
            .field("timeout", &self.timeout)
            .field("max_redirects", &self.max_redirects)
            .finish()
    }
}

impl Default for WebFetch {
    fn default() -> Self {
        WebFetch {
            allow: AllowList::default(),
            resolver: Arc::new(SystemResolver),
            max_bytes: 2 << 20,
            max_chars: 20_000,
            timeout: Duration::from_secs(20),
            max_redirects: 5,
        }
    }
}

impl WebFetch {
    /// The tool with default limits (2 MiB, 20 000 characters, 20 s, 5 redirects).
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets an otherwise refused destination through: an IP (`10.0.0.5`), an IP and port
    /// (`127.0.0.1:8080`) or a host name (`intranet.example`).
    pub fn allow(mut self, entry: &str) -> Self {
        self.allow.add(entry);
        self
    }

    /// Reaches nothing but the allow-listed destinations: no public internet, and host names
    /// that are not listed are refused without a DNS lookup. For agents that must stay on an
    /// intranet or on this machine.
    pub fn only_allowed(mut self) -> Self {
        self.allow.only_listed();
        self
    }

    /// Uses another resolver (tests: a stub that never touches the network).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = resolver;
        self
    }

    fn fail(&self, message: impl Into<String>) -> ToolError {
        ToolError::failed(WebFetchArgs::NAME, message)
    }

    /// The address to connect to for `url`, after the policy.
    async fn destination(&self, url: &url::Url) -> Result<SocketAddr, ToolError> {
        let port = url
            .port_or_known_default()
            .ok_or_else(|| self.fail(format!("{url} has no port")))?;
        let host = url.host_str().unwrap_or_default();
        let candidates: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            Some(url::Host::Domain(d))
                if self.allow.is_exclusive() && !self.allow.lists_host(d) =>
            {
                return Err(self.fail(format!(
                    "refusing `{d}`: only allow-listed destinations may be reached"
                )))
            }
            Some(url::Host::Domain(d)) => self
                .resolver
                .resolve(d, port)
                .await
                .map_err(|e| self.fail(format!("cannot resolve `{d}`: {e}")))?,
            None => return Err(self.fail(format!("{url} has no host"))),
        };
        let mut refusal = None;
        for addr in candidates {
            match decide(host, addr, &self.allow) {
                Ok(()) => return Ok(addr),
                Err(why) => refusal = refusal.or(Some(why)),
            }
        }
        Err(self.fail(refusal.unwrap_or_else(|| format!("`{host}` has no addresses"))))
    }

    /// Fetches `url`: (final URL, status, content type, body, whether the body was cut).
    async fn fetch(&self, url: &str) -> Result<(url::Url, u16, String, Vec<u8>, bool), ToolError> {
        let mut url =
            url::Url::parse(url).map_err(|e| self.fail(format!("invalid URL `{url}`: {e}")))?;
        for _ in 0..=self.max_redirects {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(self.fail(format!(
                    "only http and https URLs can be fetched, not `{}`",
                    url.scheme()
                )));
            }
            let addr = self.destination(&url).await?;
            let host = url.host_str().unwrap_or_default().to_string();
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .connect_timeout(self.timeout)
                .resolve(&host, addr)
                .user_agent(concat!("k2-web-fetch/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| self.fail(e.to_string()))?;
            let mut resp = client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| self.fail(format!("request to {url} failed: {}", chain(&e))))?;
            let status = resp.status();
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| {
                        self.fail(format!("{url} answered {status} without a Location"))
                    })?;
                url = url
                    .join(location)
                    .map_err(|e| self.fail(format!("bad redirect target `{location}`: {e}")))?;
                continue;
            }
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|c| c.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let mut body = Vec::new();
            let mut truncated = false;
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| self.fail(format!("reading {url} failed: {}", chain(&e))))?
            {
                let room = self.max_bytes - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            return Ok((url, status.as_u16(), content_type, body, truncated));
        }
        Err(self.fail(format!("more than {} redirects", self.max_redirects)))
    }

    fn truncate(&self, text: String) -> String {
        match text.char_indices().nth(self.max_chars) {
            Some((cut, _)) => {
                let rest = text[cut..].chars().count();
                format!("{}\n[… truncated: {rest} more characters]", &text[..cut])
            }
            None => text,
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[async_trait]
impl ToolFn for WebFetch {
    type Args = WebFetchArgs;

    /// With [`only_allowed`](WebFetch::only_allowed), the `url` pattern lists the reachable
    /// origins, so a constrained model can only write URLs this tool will fetch.
    fn parameters(&self) -> Value {
        let mut schema = WebFetchArgs::parameters();
        if let (Some(pattern), Some(url)) = (
            self.allow.url_pattern(),
            schema.pointer_mut("/properties/url"),
        ) {
            url["pattern"] = Value::String(pattern);
        }
        schema
    }

    async fn run(&self, args: WebFetchArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let (url, status, content_type, body, cut) =
            tokio::time::timeout(self.timeout, self.fetch(&args.url))
                .await
                .map_err(|_| ToolError::Timeout {
                    tool: WebFetchArgs::NAME.to_string(),
                    seconds: self.timeout.as_secs_f64(),
                })??;
        let raw = String::from_utf8_lossy(&body).into_owned();
        let is_html = content_type.contains("html")
            || (content_type.is_empty() && raw.trim_start().starts_with('<'));
        let (title, mut text, links) = if is_html {
            let page = extract(&raw, &url);
            (page.title, page.text, page.links)
        } else if content_type.contains("json")
            || content_type.starts_with("text/")
            || content_type.is_empty()
        {
            (None, raw, Vec::new())
        } else {
            return Ok(ToolOutput::error(format!(
                "{url} is `{content_type}` ({} bytes), which has no readable text",
                body.len()
            )));
        };
        if cut {
            text.push_str(&format!(
                "\n[… truncated: the body exceeded {} bytes]",
                self.max_bytes
            ));
        }
        let mut out = String::new();
        if let Some(t) = &title {
            out.push_str(&format!("Title: {t}\n"));
        }
        out.push_str(&format!("URL: {url}\n"));
        if !(200..300).contains(&status) {
            out.push_str(&format!("Status: {status}\n"));
        }
        out.push('\n');
        out.push_str(&text);
        if !links.is_empty() {
            out.push_str("\n\nLinks:\n");
            for (i, (label, href)) in links.iter().enumerate() {
                out.push_str(&format!("[{}] {label}: {href}\n", i + 1));
            }
        }
        let text = self.truncate(out);
        let json = json!({
            "url": url.as_str(),
            "status": status,
            "content_type": content_type,
            "title": title,
            "links": links.iter().map(|(t, u)| json!({"text": t, "url": u})).collect::<Vec<_>>(),
            "truncated": cut || text.contains("[… truncated:"),
        });
        Ok(ToolOutput {
            text,
            json: Some(json),
            is_error: !(200..300).contains(&status),
        })
    }
}
