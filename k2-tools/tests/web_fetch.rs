//! web_fetch against servers on 127.0.0.1 only, and the SSRF battery: every forbidden
//! destination is refused before any connection is made (a stub resolver stands in for DNS).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k2_tools::builtin::web::Resolve;
use k2_tools::builtin::WebFetch;
use k2_tools::{Tool, ToolContext, ToolError};
use serde_json::json;

/// A loopback HTTP server: `route(path)` gives (status, headers, body, delay before answering).
struct Server {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

type Reply = (u16, Vec<(&'static str, String)>, Vec<u8>, Duration);

fn serve(route: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let route = Arc::new(route);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let route = route.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap_or(0);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let (status, headers, body, delay) = route(&path);
                std::thread::sleep(delay);
                let mut out = stream;
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = out.write_all(head.as_bytes());
                let _ = out.write_all(&body);
            });
        }
    });
    Server { addr, hits }
}

fn ok(ct: &str, body: impl Into<Vec<u8>>) -> Reply {
    (
        200,
        vec![("Content-Type", ct.to_string())],
        body.into(),
        Duration::ZERO,
    )
}

fn redirect(to: String) -> Reply {
    (302, vec![("Location", to)], Vec::new(), Duration::ZERO)
}

const PAGE: &str = r#"<html><head><title>Tides</title></head><body><nav>menu</nav>
<article><h1>Tides</h1><p>Tides are caused by the <b>Moon</b>.</p><a href="/doc/2">Next</a></article></body></html>"#;

fn site(other: SocketAddr) -> Server {
    serve(move |path| match path {
        "/" => ok("text/html; charset=utf-8", PAGE),
        "/data.json" => ok("application/json", r#"{"answer": 42}"#),
        "/missing" => (404, vec![], b"no such page".to_vec(), Duration::ZERO),
        "/big" => ok("text/plain", vec![b'x'; 3 << 20]),
        "/slow" => (200, vec![], b"late".to_vec(), Duration::from_secs(5)),
        "/to-metadata" => redirect("http://169.254.169.254/latest/meta-data/".into()),
        "/to-other-port" => redirect(format!("http://{other}/")),
        "/to-self" => redirect("/".into()),
        "/loop" => redirect("/loop".into()),
        "/binary" => ok("image/png", vec![0x89, b'P', b'N', b'G']),
        _ => (404, vec![], Vec::new(), Duration::ZERO),
    })
}

/// Resolves every name to one fixed address, without any network.
struct Stub(SocketAddr);

#[async_trait::async_trait]
impl Resolve for Stub {
    async fn resolve(&self, _host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new(self.0.ip(), port)])
    }
}

async fn fetch(tool: &WebFetch, url: &str) -> Result<k2_tools::ToolOutput, ToolError> {
    tool.call(json!({ "url": url }), &ToolContext::default())
        .await
}

fn refused(r: Result<k2_tools::ToolOutput, ToolError>) -> String {
    match r {
        Err(ToolError::Failed { message, .. }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_allow_listed_local_site_is_read_as_text() {
    let other = serve(|_| ok("text/plain", "other"));
    let s = site(other.addr);
    let tool = WebFetch::new().allow(&s.addr.to_string());
    let out = fetch(&tool, &format!("http://{}/", s.addr)).await.unwrap();
    assert!(!out.is_error);
    assert!(out.text.starts_with("Title: Tides\n"), "{}", out.text);
    assert!(
        out.text.contains("Tides are caused by the Moon."),
        "{}",
        out.text
    );
    assert!(!out.text.contains("menu"));
    assert!(out
        .text
        .contains(&format!("[1] Next: http://{}/doc/2", s.addr)));
    let json = fetch(&tool, &format!("http://{}/data.json", s.addr))
        .await
        .unwrap();
    assert!(json.text.ends_with(r#"{"answer": 42}"#), "{}", json.text);
    let missing = fetch(&tool, &format!("http://{}/missing", s.addr))
        .await
        .unwrap();
    assert!(missing.is_error && missing.text.contains("Status: 404"));
    let same_site = fetch(&tool, &format!("http://{}/to-self", s.addr))
        .await
        .unwrap();
    assert!(same_site.text.contains("Tides"));
    let binary = fetch(&tool, &format!("http://{}/binary", s.addr))
        .await
        .unwrap();
    assert!(binary.is_error && binary.text.contains("image/png"));
}

#[tokio::test]
async fn loopback_and_private_destinations_are_refused_without_connecting() {
    let s = site(serve(|_| ok("text/plain", "")).addr);
    let tool = WebFetch::new();
    let msg = refused(fetch(&tool, &format!("http://{}/", s.addr)).await);
    assert!(msg.contains("loopback"), "{msg}");
    for url in [
        "http://[::1]/".to_string(),
        "http://10.0.0.1/".into(),
        "http://172.16.5.4:8080/".into(),
        "http://192.168.1.1/".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://[fd00:ec2::254]/".into(),
        "http://[::ffff:127.0.0.1]/".into(),
        "http://0.0.0.0/".into(),
    ] {
        let msg = refused(fetch(&tool, &url).await);
        assert!(msg.starts_with("refusing to connect"), "{url}: {msg}");
    }
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
    for url in ["file:///etc/passwd", "ftp://127.0.0.1/", "gopher://x/"] {
        assert!(refused(fetch(&tool, url).await).contains("only http and https"));
    }
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused() {
    let s = site(serve(|_| ok("text/plain", "")).addr);
    let tool = WebFetch::new().with_resolver(Arc::new(Stub(s.addr)));
    let msg = refused(fetch(&tool, &format!("http://innocent.test:{}/", s.addr.port())).await);
    assert!(
        msg.contains("loopback") && msg.contains("innocent.test"),
        "{msg}"
    );
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
    // Allow-listing the name lets it through.
    let tool = tool.allow("innocent.test");
    let out = fetch(&tool, &format!("http://innocent.test:{}/", s.addr.port()))
        .await
        .unwrap();
    assert!(out.text.contains("Tides"));
}

#[tokio::test]
async fn redirects_to_forbidden_destinations_are_refused() {
    let other = serve(|_| ok("text/plain", "secret"));
    let s = site(other.addr);
    let tool = WebFetch::new().allow(&s.addr.to_string());
    let msg = refused(fetch(&tool, &format!("http://{}/to-metadata", s.addr)).await);
    assert!(msg.contains("169.254.169.254"), "{msg}");
    let msg = refused(fetch(&tool, &format!("http://{}/to-other-port", s.addr)).await);
    assert!(msg.contains(&other.addr.to_string()), "{msg}");
    assert_eq!(
        other.hits.load(Ordering::SeqCst),
        0,
        "the forbidden server was never contacted"
    );
    let msg = refused(fetch(&tool, &format!("http://{}/loop", s.addr)).await);
    assert!(msg.contains("redirects"), "{msg}");
}

#[tokio::test]
async fn oversized_bodies_are_cut_with_a_marker_and_slow_servers_time_out() {
    let s = site(serve(|_| ok("text/plain", "")).addr);
    let mut tool = WebFetch::new().allow(&s.addr.to_string());
    tool.max_bytes = 64 << 10;
    tool.max_chars = 100_000;
    tool.timeout = Duration::from_millis(700);
    let out = fetch(&tool, &format!("http://{}/big", s.addr))
        .await
        .unwrap();
    assert!(out
        .text
        .contains("[… truncated: the body exceeded 65536 bytes]"));
    assert_eq!(out.json.as_ref().unwrap()["truncated"], true);
    tool.max_chars = 1000;
    let out = fetch(&tool, &format!("http://{}/big", s.addr))
        .await
        .unwrap();
    assert!(
        out.text.contains("more characters]"),
        "{}",
        &out.text[out.text.len() - 80..]
    );
    match fetch(&tool, &format!("http://{}/slow", s.addr)).await {
        Err(ToolError::Timeout { tool, .. }) => assert_eq!(tool, "web_fetch"),
        other => panic!("{other:?}"),
    }
}

/// Records the names it is asked for and resolves them to one fixed address.
struct Recording(SocketAddr, std::sync::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl Resolve for Recording {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        self.1.lock().unwrap().push(host.to_string());
        Ok(vec![SocketAddr::new(self.0.ip(), port)])
    }
}

#[tokio::test]
async fn only_allowed_reaches_the_list_and_never_looks_up_other_names() {
    let s = serve(|_| ok("text/plain", "local"));
    let resolver = Arc::new(Recording(s.addr, Default::default()));
    let tool = WebFetch::new()
        .allow(&s.addr.to_string())
        .allow("docs.internal")
        .only_allowed()
        .with_resolver(resolver.clone());
    // Listed: by address and by name (the name resolves to the local server).
    let out = fetch(&tool, &format!("http://{}/", s.addr)).await.unwrap();
    assert!(out.text.ends_with("\n\nlocal"), "{}", out.text);
    let url = format!("http://docs.internal:{}/", s.addr.port());
    assert!(fetch(&tool, &url).await.unwrap().text.ends_with("local"));
    // Not listed: refused by the decision, before any lookup or connection.
    let why = refused(fetch(&tool, "https://www.example.com/").await);
    assert!(why.contains("only allow-listed"), "{why}");
    let why = refused(fetch(&tool, "http://93.184.216.34/").await);
    assert!(why.contains("only allow-listed"), "{why}");
    let other_port = format!("http://127.0.0.1:{}/", s.addr.port().wrapping_add(1));
    assert!(refused(fetch(&tool, &other_port).await).contains("only allow-listed"));
    assert_eq!(*resolver.1.lock().unwrap(), ["docs.internal"]);
    assert_eq!(s.hits.load(Ordering::SeqCst), 2);
}

#[test]
fn only_allowed_narrows_the_schema_to_the_reachable_origins() {
    let open = WebFetch::new().allow("127.0.0.1:8080");
    let only = open
        .clone()
        .allow("10.0.0.5")
        .allow("docs.internal")
        .allow("http://127.0.0.2:9000")
        .allow("https://wiki.internal")
        .only_allowed();
    let pattern = |t: &WebFetch| t.parameters()["properties"]["url"]["pattern"].clone();
    assert_eq!(pattern(&open), json!(r#"^https?://[^ "\\]{1,1000}$"#));
    let schema = only.parameters();
    let check = |url: &str| k2_tools::violations(&schema, &json!({ "url": url })).unwrap();
    for ok in [
        "http://127.0.0.1:8080/",
        "http://127.0.0.1:8080",
        "https://10.0.0.5:8443/a/b?c=d",
        "http://docs.internal/solar.html",
        "http://127.0.0.2:9000/x.html",
        "https://wiki.internal/",
        "https://wiki.internal:443/page",
    ] {
        assert!(check(ok).is_empty(), "{ok}: {:?}", check(ok));
    }
    for bad in [
        "http://127.0.0.1:8081/",
        "http://127.0.0.1:80800/",
        "http://127.0.0.1.evil.test:8080/",
        "http://docs.internal.evil.test/",
        "http://www.example.com/",
        "ftp://docs.internal/",
        "https://127.0.0.2:9000/",
        "http://wiki.internal/",
    ] {
        assert!(!check(bad).is_empty(), "{bad} should not match {schema}");
    }
}
