//! `calculator`: exact arithmetic for the model.
//!
//! Integers and fractions stay exact (big rationals: `1/3 + 1/6` is `1/2`, `2^200` has all
//! its digits); roots, logarithms and trigonometry fall back to `f64`. There is no general
//! evaluator behind it: the expression reader knows numbers, operators, a few constants and a
//! fixed list of functions, so there is nothing to execute. No maintained expression crate
//! keeps results exact with big integers, which is why the reader is our own.

mod num;
mod parse;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use crate::{ToolArgs, ToolContext, ToolError, ToolFn, ToolOutput};

pub use num::Num;

/// Longest expression accepted.
const MAX_LEN: usize = 10_000;

/// Why an expression has no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CalcError {
    /// The text is not an expression.
    #[error("syntax error at character {position}: {message}")]
    Syntax {
        /// Byte offset in the expression.
        position: usize,
        /// What was expected.
        message: String,
    },
    /// Division (or modulo) by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// The result is too large.
    #[error("overflow: {0}")]
    Overflow(String),
    /// A function outside its domain (`sqrt(-1)`, `ln(0)`).
    #[error("math domain error: {0}")]
    Domain(String),
    /// A name that is neither a constant nor a function.
    #[error("unknown name `{0}` (functions: sqrt, cbrt, root, abs, floor, ceil, round, trunc, min, max, gcd, lcm, ln, log, log2, log10, exp, sin, cos, tan, asin, acos, atan, atan2, sinh, cosh, tanh, deg, rad; constants: pi, e, tau, phi)")]
    UnknownName(String),
    /// A function called with the wrong number of arguments.
    #[error("{name} takes {expected} argument(s), got {got}")]
    Arity {
        /// The function.
        name: String,
        /// How many it takes.
        expected: usize,
        /// How many it got.
        got: usize,
    },
}

/// Evaluates an arithmetic expression.
///
/// ```
/// use k2_tools::builtin::{evaluate, render, Num};
/// assert_eq!(render(&evaluate("1/3 + 1/6")?), "0.5");
/// assert_eq!(render(&evaluate("1/3")?), "1/3 ≈ 0.3333333333333333");
/// assert_eq!(render(&evaluate("0.1 + 0.2")?), "0.3");
/// assert_eq!(render(&evaluate("2^64")?), "18446744073709551616");
/// assert_eq!(render(&evaluate("15% * 80")?), "12");
/// assert!(evaluate("1/0").is_err());
/// # Ok::<(), k2_tools::builtin::CalcError>(())
/// ```
pub fn evaluate(expression: &str) -> Result<Num, CalcError> {
    if expression.len() > MAX_LEN {
        return Err(CalcError::Syntax {
            position: MAX_LEN,
            message: format!("the expression is longer than {MAX_LEN} characters"),
        });
    }
    parse::Parser::new(expression).evaluate()
}

pub use num::render;

/// Evaluate an arithmetic expression exactly. Supports + - * / mod ^ (or **), factorial (!),
/// percent (%), parentheses, big integers and exact fractions; functions sqrt, cbrt,
/// root(x, n), abs, floor, ceil, round, trunc, min, max, gcd, lcm, ln, log(x[, base]), log2,
/// log10, exp, sin, cos, tan, asin, acos, atan, atan2, sinh, cosh, tanh, deg, rad (angles in
/// radians); constants pi, e, tau, phi.
#[derive(Debug, Deserialize, schemars::JsonSchema, crate::Tool)]
#[tool(name = "calculator")]
pub struct CalculatorArgs {
    /// The expression, e.g. `(3/4 + 2^10) * 15%` or `sqrt(2) * sin(pi/4)`.
    pub expression: String,
}

/// The `calculator` tool.
#[derive(Debug, Clone, Default)]
pub struct Calculator;

/// Every name a calculator expression may use: the functions, then the constants.
pub const NAMES: &[&str] = &[
    "sqrt", "cbrt", "root", "abs", "floor", "ceil", "round", "trunc", "min", "max", "gcd", "lcm",
    "ln", "log", "log2", "log10", "exp", "sin", "cos", "tan", "asin", "acos", "atan", "atan2",
    "sinh", "cosh", "tanh", "deg", "rad", "pi", "e", "tau", "phi",
];

#[async_trait]
impl ToolFn for Calculator {
    type Args = CalculatorArgs;

    /// The expression's schema spells out the vocabulary (digits, operators, [`NAMES`]), so
    /// the call grammar keeps even a small model to arithmetic, and words are refused before
    /// evaluation with the schema's message.
    fn parameters(&self) -> Value {
        let mut schema = CalculatorArgs::parameters();
        if let Some(expression) = schema.pointer_mut("/properties/expression") {
            let pattern = format!(
                "^([0-9._ eE+*/^!%(),-]|mod|π|{}){{1,200}}$",
                NAMES.join("|")
            );
            expression["pattern"] = Value::String(pattern);
        }
        schema
    }

    async fn run(&self, args: CalculatorArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let value = evaluate(&args.expression)
            .map_err(|e| ToolError::failed(CalculatorArgs::NAME, e.to_string()))?;
        let text = render(&value);
        let mut out = ToolOutput::text(text.clone());
        out.json = Some(serde_json::json!({
            "expression": args.expression,
            "result": text,
            "exact": matches!(value, Num::Exact(_)),
            "approximate": value.to_f64(),
        }));
        Ok(out)
    }
}
