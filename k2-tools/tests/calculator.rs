//! The calculator: exact where it can be, correct floating point where it cannot, and clear
//! errors for everything else.

use k2_tools::builtin::{evaluate, render, CalcError, Calculator};
use k2_tools::{Registry, ToolContext, ToolError};
use serde_json::json;

fn calc(e: &str) -> String {
    render(&evaluate(e).unwrap_or_else(|err| panic!("{e}: {err}")))
}

#[test]
fn exact_arithmetic() {
    let cases = [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("2^10", "1024"),
        ("2**3**2", "512"),
        ("-2^2", "-4"),
        ("(-2)^2", "4"),
        ("2^-2", "0.25"),
        ("1/3 + 1/3 + 1/3", "1"),
        ("0.1 + 0.2", "0.3"),
        ("1/7", "1/7 ≈ 0.14285714285714285"),
        ("-7 mod 3", "2"),
        ("7.5 mod 2", "1.5"),
        ("20!", "2432902008176640000"),
        ("25% * 80", "20"),
        ("1e3 + 2.5E-1", "1000.25"),
        ("1_000_000 / 8", "125000"),
        ("sqrt(16/9)", "4/3 ≈ 1.3333333333333333"),
        ("cbrt(-27)", "-3"),
        ("8^(2/3)", "4"),
        ("root(32, 5)", "2"),
        ("gcd(84, 36) + lcm(4, 6)", "24"),
        ("abs(-3/4)", "0.75"),
        ("floor(-2.5) + ceil(2.1) + round(2.5)", "3"),
        ("min(3, 1/2, 2) * max(1, 4)", "2"),
        (
            "123456789012345678901234567890 * 987654321098765432109876543210",
            "121932631137021795226185032733622923332237463801111263526900",
        ),
    ];
    for (e, want) in cases {
        assert_eq!(calc(e), want, "{e}");
    }
    assert_eq!(calc("2^256").len(), 78);
}

#[test]
fn floating_point_where_exactness_ends() {
    let close = |e: &str, want: f64| {
        let got = evaluate(e).unwrap().to_f64();
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1.0),
            "{e}: {got} vs {want}"
        );
    };
    close("sqrt(2)", std::f64::consts::SQRT_2);
    close("sin(pi/6)", 0.5);
    close("cos(0) + tan(pi/4)", 2.0);
    close("ln(e^2)", 2.0);
    close("log(1000)", 3.0);
    close("log(8, 2)", 3.0);
    close("log2(1024) + log10(0.01)", 8.0);
    close("exp(1)", std::f64::consts::E);
    close("atan2(1, 1) * 4", std::f64::consts::PI);
    close("deg(pi)", 180.0);
    close("2^0.5", std::f64::consts::SQRT_2);
    close("asin(1) * 2", std::f64::consts::PI);
    close("π", std::f64::consts::PI);
}

#[test]
fn clear_errors_for_bad_input() {
    let err = |e: &str| evaluate(e).unwrap_err();
    assert_eq!(err("1/0"), CalcError::DivisionByZero);
    assert_eq!(err("5 mod 0"), CalcError::DivisionByZero);
    assert_eq!(err("0^-1"), CalcError::DivisionByZero);
    assert!(matches!(err("10^10^10"), CalcError::Overflow(_)));
    assert!(matches!(err("100000!"), CalcError::Overflow(_)));
    assert!(matches!(err("exp(1000)"), CalcError::Overflow(_)));
    assert!(matches!(err("sqrt(-1)"), CalcError::Domain(_)));
    assert!(matches!(err("ln(0)"), CalcError::Domain(_)));
    assert!(matches!(err("(-8)^0.5"), CalcError::Domain(_)));
    assert!(matches!(err("2.5!"), CalcError::Domain(_)));
    assert!(matches!(err("1 +"), CalcError::Syntax { position: 3, .. }));
    assert!(matches!(err("(1 + 2"), CalcError::Syntax { .. }));
    assert!(matches!(err("2 3"), CalcError::Syntax { position: 2, .. }));
    assert!(matches!(err(""), CalcError::Syntax { .. }));
    assert!(matches!(err("foo(1)"), CalcError::UnknownName(n) if n == "foo"));
    assert!(matches!(err("x + 1"), CalcError::UnknownName(n) if n == "x"));
    assert!(matches!(err("sqrt(1, 2)"), CalcError::Arity { .. }));
    // Code is not evaluated: these are just unknown names or syntax errors.
    for hostile in [
        "__import__('os').system('ls')",
        "std::process::exit(1)",
        "`rm -rf /`",
        "eval(1)",
    ] {
        assert!(evaluate(hostile).is_err(), "{hostile}");
    }
    // Deep nesting is an error, not a stack overflow.
    let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(matches!(evaluate(&deep), Err(CalcError::Syntax { .. })));
    assert!(matches!(
        evaluate(&"1+".repeat(20_000)),
        Err(CalcError::Syntax { .. })
    ));
}

#[tokio::test]
async fn the_tool_reports_results_and_errors() {
    let mut tools = Registry::new();
    tools.register(Calculator).unwrap();
    let ctx = ToolContext::default();
    let out = tools
        .call(
            "calculator",
            json!({"expression": "(3/4 + 2^10) * 15%"}),
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(out.text, "153.7125");
    assert_eq!(out.json.as_ref().unwrap()["exact"], true);
    match tools
        .call("calculator", json!({"expression": "1/0"}), &ctx)
        .await
    {
        Err(ToolError::Failed { tool, message }) => {
            assert_eq!(tool, "calculator");
            assert_eq!(message, "division by zero");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        tools.call("calculator", json!({"expr": "1"}), &ctx).await,
        Err(ToolError::InvalidArguments { .. })
    ));
}

#[test]
fn the_schema_pattern_admits_arithmetic_and_every_known_name_only() {
    use k2_tools::builtin::NAMES;
    use k2_tools::Tool;
    let schema = Calculator.parameters();
    let admits = |e: &str| {
        k2_tools::violations(&schema, &json!({ "expression": e }))
            .unwrap()
            .is_empty()
    };
    for e in [
        "1 + 2 * 3",
        "2**3**2",
        "-7 mod 3",
        "20!",
        "25% * 80",
        "1e3 + 2.5E-1",
        "1_000_000 / 8",
        "sqrt(2) * sin(pi/4)",
        "log(8, 2) + atan2(1, 1) + 2π",
    ] {
        assert!(admits(e), "{e}");
    }
    for name in NAMES {
        // Each name the pattern admits is one the calculator knows.
        let e = format!("{name}(1)");
        let unknown = |e: &str| matches!(evaluate(e), Err(CalcError::UnknownName(_)));
        let known = !unknown(&e) || !unknown(name);
        assert!(known && admits(&e), "{name}");
    }
    for e in ["the answer", "import os", "x + 1", "", "python"] {
        assert!(!admits(e), "{e}");
    }
}
