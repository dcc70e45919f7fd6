//! The remote backend against a scripted OpenAI-compatible server on 127.0.0.1: streaming
//! and whole replies, tool-call assembly, usage, retries, and every way a server can fail.

#[path = "support/http.rs"]
mod http;

use std::time::Duration;

use futures::StreamExt;
use http::{Part, Reply, Server};
use k2_model::{
    CancelToken, ChatEvent, ChatModel, ChatRequest, ChatTemplate, FinishReason, FormatError,
    GenerateOptions, Message, ModelError, Remote, RemoteMode, RemoteOptions, ToolCall, ToolChoice,
    ToolFormat, ToolSpec,
};
use serde_json::{json, Value};

fn options(server: &Server) -> RemoteOptions {
    RemoteOptions {
        api_key: Some("sk-test".into()),
        backoff: Duration::from_millis(10),
        ..RemoteOptions::new(server.url(), "kimi-k2")
    }
}

fn weather() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "Weather".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    }
}

fn request() -> ChatRequest {
    let earlier = ToolCall {
        id: "functions.get_weather:0".into(),
        name: "get_weather".into(),
        arguments: json!({"city": "Rome"}),
    };
    ChatRequest {
        messages: vec![
            Message::user("Weather in Rome and Oslo?"),
            Message::assistant_with_calls("", vec![earlier.clone()]),
            Message::tool_result(&earlier, "Rome: 20 °C"),
        ],
        tools: vec![weather()],
        ..ChatRequest::default()
    }
}

fn chunk(delta: Value) -> Value {
    json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
}

/// Two calls whose pieces interleave, arguments split mid-token, then usage.
fn interleaved() -> Vec<Value> {
    let call = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut f = json!({"arguments": args});
        if let Some(n) = name {
            f["name"] = json!(n);
        }
        let mut c = json!({"index": index, "function": f});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["type"] = json!("function");
        }
        chunk(json!({"tool_calls": [c]}))
    };
    vec![
        chunk(json!({"role": "assistant", "content": "Let me "})),
        chunk(json!({"content": "check."})),
        call(0, Some("functions.get_weather:1"), Some("get_weather"), ""),
        call(
            1,
            Some("functions.get_weather:2"),
            Some("get_weather"),
            "{\"ci",
        ),
        call(0, None, None, "{\"city\": \"Os"),
        call(1, None, None, "ty\": \"Bergen\"}"),
        call(0, None, None, "lo\"}"),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 20,
               "prompt_tokens_details": {"cached_tokens": 60}}}),
    ]
}

#[tokio::test]
async fn a_streamed_reply_assembles_interleaved_calls_and_usage() {
    let server = Server::start(|_, _| Reply::sse(&interleaved())).await;
    let remote = Remote::new(options(&server)).unwrap();
    let mut stream = remote.stream(request()).await.unwrap();
    let mut deltas = String::new();
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::Delta(d) => deltas.push_str(&d),
            ChatEvent::Done(d) => done = Some(d),
            _ => {}
        }
    }
    let done = done.unwrap();
    assert_eq!(deltas, "Let me check.");
    assert_eq!(done.content, "Let me check.");
    let calls: Vec<_> = done
        .tool_calls
        .iter()
        .map(|c| (c.id.as_str(), c.arguments.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            ("functions.get_weather:1", json!({"city": "Oslo"})),
            ("functions.get_weather:2", json!({"city": "Bergen"}))
        ]
    );
    assert!(done.malformed.is_none());
    assert_eq!(done.usage.prompt_tokens, 100);
    assert_eq!(done.usage.prompt_tokens_evaluated, 40);
    assert_eq!(done.usage.completion_tokens, 20);

    // What the server was sent: OpenAI's shapes, the key, the tools.
    let sent = server.request(0);
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test"));
    let body = &sent.body;
    assert_eq!(body["model"], "kimi-k2");
    assert_eq!(body["stream"], true);
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
    let history = &body["messages"][1];
    assert_eq!(history["content"], Value::Null);
    assert_eq!(
        history["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Rome\"}"
    );
    assert_eq!(
        body["messages"][2]["tool_call_id"],
        "functions.get_weather:0"
    );
    assert!(body.get("top_k").is_none(), "no extensions unless asked");
}

#[tokio::test]
async fn a_whole_reply_reads_the_same() {
    let server = Server::start(|_, _| {
        Reply::json(200, &json!({
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "call_9", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3}
        }))
    })
    .await;
    let remote = Remote::new(RemoteOptions {
        stream: false,
        ..options(&server)
    })
    .unwrap();
    let done = remote.chat(request()).await.unwrap();
    assert_eq!(done.tool_calls[0].id, "call_9");
    assert_eq!(done.tool_calls[0].arguments, json!({"city": "Oslo"}));
    assert_eq!(done.content, "");
    assert_eq!(done.usage.prompt_tokens_evaluated, 12);
    assert_eq!(server.request(0).body["stream"], false);
}

fn answer() -> Reply {
    Reply::sse(&[
        chunk(json!({"content": "Sunny."})),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    ])
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_before_any_output() {
    let server = Server::start(|_, n| match n {
        0 => Reply::json(429, &json!({"error": {"message": "slow down"}}))
            .header("Retry-After", "0.05"),
        1 => Reply::json(500, &json!({"error": "overloaded"})),
        _ => answer(),
    })
    .await;
    let remote = Remote::new(options(&server)).unwrap();
    let done = remote.chat(request()).await.unwrap();
    assert_eq!(done.content, "Sunny.");
    assert_eq!(server.count(), 3);

    let always = Server::start(|_, _| {
        Reply::json(503, &json!({"error": {"message": "down for maintenance"}}))
    })
    .await;
    let remote = Remote::new(RemoteOptions {
        retries: 2,
        ..options(&always)
    })
    .unwrap();
    let err = remote.chat(request()).await.unwrap_err();
    assert!(matches!(err, ModelError::Http { status: 503, .. }), "{err}");
    assert!(err.to_string().contains("down for maintenance"), "{err}");
    assert_eq!(always.count(), 3, "one try and two retries");
}

#[tokio::test]
async fn client_errors_are_typed_show_the_servers_message_and_are_not_retried() {
    for (status, message, hint) in [
        (401, "Invalid API key", "K2_API_KEY"),
        (404, "The model `kimi-k3` does not exist", "model name"),
        (
            400,
            "This model's maximum context length is 8192 tokens",
            "",
        ),
    ] {
        let server =
            Server::start(move |_, _| Reply::json(status, &json!({"error": {"message": message}})))
                .await;
        let err = Remote::new(options(&server))
            .unwrap()
            .chat(request())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ModelError::Http { status: s, .. } if s == status),
            "{text}"
        );
        assert!(text.contains(message) && text.contains(hint), "{text}");
        assert_eq!(server.count(), 1);
    }
}

#[tokio::test]
async fn a_stream_cut_halfway_is_an_error_after_the_output_so_far_and_is_not_retried() {
    let server = Server::start(|_, _| {
        let mut reply = Reply::sse(&interleaved()[..3]);
        reply.parts.truncate(3);
        reply.parts.push(Part::Cut);
        reply
    })
    .await;
    let remote = Remote::new(options(&server)).unwrap();
    let mut stream = remote.stream(request()).await.unwrap();
    let mut deltas = String::new();
    let mut error = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(ChatEvent::Delta(d)) => deltas.push_str(&d),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => error = Some(e),
        }
    }
    assert_eq!(deltas, "Let me check.");
    let error = error.expect("the cut is reported");
    assert!(matches!(error, ModelError::Reply { .. }), "{error}");
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn garbage_in_the_stream_is_an_error_not_a_panic() {
    for garbage in [
        "<html><body>502 Bad Gateway</body></html>\n",
        "data: {not json}\n\n",
        "data: \u{1}\u{2}\n\n",
    ] {
        let server = Server::start(move |_, _| {
            let mut reply = Reply::sse(&[chunk(json!({"content": "ok"}))]);
            reply
                .parts
                .insert(1, Part::Bytes(garbage.as_bytes().to_vec()));
            reply
        })
        .await;
        let err = Remote::new(options(&server))
            .unwrap()
            .chat(request())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ModelError::Reply { .. }),
            "{garbage:?}: {err}"
        );
    }
}

#[tokio::test]
async fn a_silent_server_hits_the_idle_timeout() {
    let server = Server::start(|_, _| {
        let mut reply = Reply::sse(&[chunk(json!({"content": "thinking"}))]);
        reply.parts.insert(1, Part::Sleep(Duration::from_secs(30)));
        reply
    })
    .await;
    let remote = Remote::new(RemoteOptions {
        idle_timeout: Duration::from_millis(200),
        ..options(&server)
    })
    .unwrap();
    let err = remote.chat(request()).await.unwrap_err();
    assert!(err.to_string().contains("no data for"), "{err}");
}

#[tokio::test]
async fn invalid_call_json_from_the_server_is_a_malformed_reply() {
    let server = Server::start(|_, _| {
        Reply::sse(&[
            chunk(json!({"tool_calls": [{"index": 0, "id": "c0", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]})),
            chunk(json!({"tool_calls": [{"index": 1, "id": "c1", "function": {"name": "get_weather", "arguments": "{\"city\": "}}]})),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ])
    })
    .await;
    let done = Remote::new(options(&server))
        .unwrap()
        .chat(request())
        .await
        .unwrap();
    assert_eq!(done.tool_calls.len(), 1, "the good call before it is kept");
    assert!(
        matches!(done.malformed, Some(FormatError::BadArguments { .. })),
        "{:?}",
        done.malformed
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_connect_error_after_the_retries() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let remote = Remote::new(RemoteOptions {
        retries: 1,
        backoff: Duration::from_millis(10),
        ..RemoteOptions::new(format!("http://127.0.0.1:{port}/v1"), "m")
    })
    .unwrap();
    let err = remote.chat(request()).await.unwrap_err();
    assert!(matches!(err, ModelError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn cancelling_stops_a_stream() {
    let server = Server::start(|_, _| {
        let mut reply = Reply::sse(&[chunk(json!({"content": "one "}))]);
        reply.parts.insert(1, Part::Sleep(Duration::from_secs(30)));
        reply
    })
    .await;
    let cancel = CancelToken::new();
    let req = ChatRequest {
        options: GenerateOptions {
            cancel: cancel.clone(),
            ..GenerateOptions::default()
        },
        ..request()
    };
    let remote = Remote::new(options(&server)).unwrap();
    let mut stream = remote.stream(req).await.unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        ChatEvent::Delta("one ".into())
    );
    cancel.cancel();
    match stream.next().await.unwrap().unwrap() {
        ChatEvent::Done(done) => assert_eq!(done.finish_reason, FinishReason::Cancelled),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn raw_mode_renders_with_our_template_sends_our_grammar_and_parses_our_format() {
    let server = Server::start(|_, _| {
        let text = "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
        let mut events: Vec<Value> = text
            .as_bytes()
            .chunks(7)
            .map(|c| json!({"choices": [{"index": 0, "text": String::from_utf8_lossy(c), "finish_reason": null}]}))
            .collect();
        events.push(json!({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
                           "timings": {"prompt_n": 5, "cache_n": 95, "prompt_ms": 10.0, "predicted_ms": 50.0}}));
        Reply::sse(&events)
    })
    .await;
    let template = ChatTemplate::new(
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>",
        "",
        "",
    )
    .unwrap();
    let remote = Remote::new(RemoteOptions {
        mode: RemoteMode::Raw {
            template: template.into(),
            format: ToolFormat::Hermes,
            grammar: true,
            max_string: Some(64),
        },
        extended_sampling: true,
        ..options(&server)
    })
    .unwrap();
    let req = ChatRequest {
        messages: vec![Message::user("Weather in Oslo?")],
        tools: vec![weather()],
        tool_choice: ToolChoice::Auto,
        ..ChatRequest::default()
    };
    let done = remote.chat(req).await.unwrap();
    assert_eq!(done.content, "Checking.");
    assert_eq!(done.tool_calls[0].arguments, json!({"city": "Oslo"}));
    assert_eq!(done.usage.prompt_tokens, 100);
    assert_eq!(done.usage.prompt_tokens_evaluated, 5);

    let body = server.request(0).body;
    assert_eq!(server.request(0).path, "/v1/completions");
    let prompt = body["prompt"].as_str().unwrap();
    assert!(
        prompt.starts_with("<|system|>") && prompt.contains("<tools>"),
        "{prompt}"
    );
    assert!(
        prompt.ends_with("<|user|>Weather in Oslo?\n<|assistant|>"),
        "{prompt}"
    );
    assert!(body["grammar"].as_str().unwrap().contains("get_weather"));
    assert_eq!(body["grammar_lazy"], true);
    assert_eq!(
        body["grammar_triggers"],
        json!([{"type": 1, "value": "<tool_call>"}])
    );
    assert_eq!(body["repeat_penalty"], 1.0);
}
