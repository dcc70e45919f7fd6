//! The embedded engine on the real default model (SmolLM2-135M-Instruct Q4_1).

mod common;

use futures::StreamExt;
use k2_model::{
    ChatEvent, ChatModel, ChatRequest, Engine, EngineOptions, FinishReason, GenerateOptions,
    Message, ModelError, Sampling, TemplateInput,
};

fn opts(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        ..GenerateOptions::default()
    }
}

#[test]
fn loads_and_reports_facts() {
    let engine = common::shared();
    let info = engine.info();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.vocab_size, 49152);
    assert_eq!(info.layers, 30);
    assert_eq!(info.context_length, 8192);
    assert_eq!(
        info.eos.as_ref().map(|t| t.text.as_str()),
        Some("<|im_end|>")
    );
    assert!(info.parameters.unwrap_or(0) > 100_000_000);
    assert!(info.special_tokens.iter().any(|t| t.text == "<|im_start|>"));
    let template = info.chat_template.as_deref().expect("embedded template");
    assert!(template.contains("<|im_start|>"));
}

#[test]
fn renders_the_chatml_template_exactly() {
    let engine = common::shared();
    let out = engine
        .render(&TemplateInput {
            messages: vec![
                Message::user("What is 2+2?"),
                Message::assistant("4"),
                Message::user("And 3+3?"),
            ],
            add_generation_prompt: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n\
         <|im_start|>assistant\n4<|im_end|>\n\
         <|im_start|>user\nAnd 3+3?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    // With a system message of our own, the default one is not added.
    let out = engine
        .render(&TemplateInput {
            messages: vec![Message::system("Be brief."), Message::user("Hi")],
            add_generation_prompt: false,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    );
}

#[tokio::test]
async fn greedy_and_seeded_generation_are_deterministic() {
    let engine = common::shared();
    let request = |sampling: Sampling| ChatRequest {
        messages: vec![Message::user("Name three colours.")],
        options: GenerateOptions {
            sampling,
            max_tokens: 24,
            ..GenerateOptions::default()
        },
        ..ChatRequest::default()
    };
    let a = engine.chat(request(Sampling::greedy())).await.unwrap();
    let b = engine.chat(request(Sampling::greedy())).await.unwrap();
    assert!(!a.text.trim().is_empty());
    assert_eq!(a.text, b.text);
    assert_eq!(a.usage.completion_tokens, 24);
    assert_eq!(a.finish_reason, FinishReason::Length);

    let hot = |seed| request(Sampling::with_temperature(1.5, seed));
    let c = engine.chat(hot(7)).await.unwrap();
    let d = engine.chat(hot(7)).await.unwrap();
    assert_eq!(c.text, d.text, "same seed, same text");
    let mut differs = false;
    for seed in 8..12 {
        differs |= engine.chat(hot(seed)).await.unwrap().text != c.text;
    }
    assert!(
        differs,
        "other seeds should give other samples at temperature 1.5"
    );
}

#[tokio::test]
async fn streamed_deltas_add_up_to_the_completion() {
    let engine = common::shared();
    let mut stream = engine
        .stream(ChatRequest {
            options: opts(20),
            ..ChatRequest::new(vec![Message::user("Say hello.")])
        })
        .await
        .unwrap();
    let mut deltas = String::new();
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::Delta(d) => deltas.push_str(&d),
            ChatEvent::Done(c) => done = Some(c),
            other => panic!("no tools were offered, got {other:?}"),
        }
    }
    let done = done.expect("a Done event");
    assert_eq!(deltas, done.text);
}

#[tokio::test]
async fn second_turn_evaluates_only_new_tokens_and_matches_a_fresh_session() {
    let warm = common::engine(2048);
    let mut messages = vec![Message::user("Give me one fruit.")];
    let first = warm
        .chat(ChatRequest {
            options: opts(16),
            ..ChatRequest::new(messages.clone())
        })
        .await
        .unwrap();
    assert_eq!(
        first.usage.prompt_tokens_evaluated,
        first.usage.prompt_tokens
    );

    messages.push(Message::assistant(first.text.clone()));
    messages.push(Message::user("And one vegetable?"));
    let request = ChatRequest {
        options: opts(16),
        ..ChatRequest::new(messages)
    };
    let prompt1 = warm
        .prompt_for(&ChatRequest::new(vec![Message::user("Give me one fruit.")]))
        .unwrap();
    let prompt2 = warm.prompt_for(&request).unwrap();
    let (n1, n2) = (warm.tokenize(&prompt1).len(), warm.tokenize(&prompt2).len());

    let second = warm.chat(request.clone()).await.unwrap();
    assert_eq!(second.usage.prompt_tokens, n2);
    // Only what the second turn added is read: not the first prompt, not the first answer.
    assert!(
        second.usage.prompt_tokens_evaluated <= n2 - n1,
        "evaluated {} of {n2} (first prompt was {n1})",
        second.usage.prompt_tokens_evaluated
    );
    assert!(second.usage.prompt_tokens_cached() >= n1);

    let fresh = common::engine(2048).chat(request).await.unwrap();
    assert_eq!(fresh.usage.prompt_tokens_evaluated, n2);
    assert_eq!(fresh.text, second.text);
}

#[tokio::test]
async fn what_the_model_wrote_is_reused_as_written() {
    let engine = common::engine(2048);
    let prompt = engine
        .prompt_for(&ChatRequest::new(vec![Message::user(
            "Write a haiku about rain.",
        )]))
        .unwrap();
    let first = engine.complete(&prompt, opts(24)).await.unwrap();
    // Every token the first call decoded: its prompt and all it generated but a last token
    // that hit the length limit before it could be decoded.
    let decoded = first.usage.prompt_tokens + first.usage.completion_tokens
        - usize::from(first.finish_reason == FinishReason::Length);
    let next = format!(
        "{prompt}{}<|im_end|>\n<|im_start|>user\nAnother?<|im_end|>\n<|im_start|>assistant\n",
        first.text
    );
    let second = engine.complete(&next, opts(4)).await.unwrap();
    assert!(
        second.usage.prompt_tokens_cached() >= decoded,
        "reused {} of the {decoded} tokens already decoded",
        second.usage.prompt_tokens_cached()
    );
    assert!(
        second.usage.prompt_tokens_evaluated < 16,
        "{:?}",
        second.usage
    );
}

#[tokio::test]
async fn identical_prompt_reuses_all_but_one_token() {
    let engine = common::engine(1024);
    let request = ChatRequest {
        options: opts(4),
        ..ChatRequest::new(vec![Message::user("Count to three.")])
    };
    let a = engine.chat(request.clone()).await.unwrap();
    let b = engine.chat(request).await.unwrap();
    assert_eq!(b.usage.prompt_tokens_evaluated, 1);
    assert_eq!(a.text, b.text);
}

#[tokio::test]
async fn cancellation_stops_generation() {
    let engine = common::shared();
    let options = GenerateOptions {
        max_tokens: 1500,
        ..GenerateOptions::default()
    };
    let cancel = options.cancel.clone();
    let mut stream = engine
        .stream(ChatRequest {
            options,
            ..ChatRequest::new(vec![Message::user(
                "Write a very long story about a dragon.",
            )])
        })
        .await
        .unwrap();
    // Another task cancels once the first piece of text has arrived.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let canceller = tokio::spawn(async move {
        if first_rx.await.is_ok() {
            cancel.cancel();
        }
    });
    let mut first_tx = Some(first_tx);
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::Delta(_) => {
                if let Some(tx) = first_tx.take() {
                    let _ = tx.send(());
                }
            }
            ChatEvent::Done(c) => done = Some(c),
            other => panic!("no tools were offered, got {other:?}"),
        }
    }
    canceller.await.unwrap();
    let done = done.unwrap();
    assert_eq!(done.finish_reason, FinishReason::Cancelled);
    assert!(done.usage.completion_tokens < 20, "{:?}", done.usage);
}

#[tokio::test]
async fn stop_strings_end_the_output_before_the_match() {
    let engine = common::shared();
    let request = |stop: Vec<String>| ChatRequest {
        options: GenerateOptions {
            max_tokens: 40,
            stop,
            ..GenerateOptions::default()
        },
        ..ChatRequest::new(vec![Message::user("Describe the sea in two sentences.")])
    };
    let full = engine.chat(request(vec![])).await.unwrap();
    let words: Vec<&str> = full.text.split_whitespace().collect();
    assert!(words.len() > 4, "{:?}", full.text);
    let stop = words[3].to_string();
    let cut = engine.chat(request(vec![stop.clone()])).await.unwrap();
    assert_eq!(cut.finish_reason, FinishReason::StopString);
    let at = full.text.find(&stop).unwrap();
    assert_eq!(cut.text, full.text[..at]);
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_a_typed_error() {
    let engine = common::engine(64);
    let long = "word ".repeat(600);
    let err = engine
        .chat(ChatRequest::new(vec![Message::user(long)]))
        .await
        .unwrap_err();
    match err {
        ModelError::PromptTooLong { tokens, n_ctx } => {
            assert_eq!(n_ctx, engine.n_ctx());
            assert!(tokens >= n_ctx);
        }
        other => panic!("unexpected {other:?}"),
    }
    // The engine is still usable afterwards.
    let ok = engine
        .chat(ChatRequest {
            options: opts(2),
            ..ChatRequest::new(vec![Message::user("Hi")])
        })
        .await
        .unwrap();
    assert_eq!(ok.usage.completion_tokens, 2);
}

#[tokio::test]
async fn a_template_that_raises_is_a_typed_error() {
    let engine = Engine::load(
        common::model_path(),
        EngineOptions {
            n_ctx: Some(256),
            chat_template: Some(
                "{% if messages[-1].role != 'user' %}{{ raise_exception('last message must be from the user') }}{% endif %}{{ messages[-1].content }}".into(),
            ),
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let err = engine
        .chat(ChatRequest::new(vec![Message::assistant("hello")]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ModelError::TemplateRaised(m) if m == "last message must be from the user"),
        "{err:?}"
    );
}

#[test]
fn bad_model_files_get_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    assert!(matches!(
        Engine::load(&missing, EngineOptions::default()),
        Err(ModelError::NotFound { .. })
    ));

    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "this is not a model").unwrap();
    assert!(matches!(
        Engine::load(&text, EngineOptions::default()),
        Err(ModelError::InvalidGguf { .. })
    ));

    let real = std::fs::read(common::model_path()).unwrap();
    for keep in [16, 4096, real.len() / 2] {
        let truncated = dir.path().join(format!("cut-{keep}.gguf"));
        std::fs::write(&truncated, &real[..keep]).unwrap();
        let err = Engine::load(&truncated, EngineOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                ModelError::InvalidGguf { .. } | ModelError::Load { .. }
            ),
            "{keep}: {err:?}"
        );
        assert!(err.to_string().contains("truncated"), "{keep}: {err}");
    }
}
