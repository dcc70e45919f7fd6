//! The built-in tools.

mod calculator;
pub mod sandbox;
pub mod web;

pub use calculator::{evaluate, render, CalcError, Calculator, CalculatorArgs, Num, NAMES};
pub use sandbox::{CodeSandbox, CodeSandboxArgs, Language};
pub use web::{WebFetch, WebFetchArgs};
