//! Tools whose arguments are a Rust type: `#[derive(Tool)]` writes the [`ToolArgs`]
//! metadata, you write [`Run`], and [`typed`] turns the pair into a [`Tool`].

use std::marker::PhantomData;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ToolError;
use crate::tool::{Tool, ToolContext, ToolOutput};

/// Name, description and schema of a tool's argument type. Written by `#[derive(Tool)]`.
pub trait ToolArgs: DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The tool's name.
    const NAME: &'static str;
    /// The tool's description (the struct's doc comment).
    const DESCRIPTION: &'static str;

    /// JSON Schema of the arguments, with sub-schemas inlined so that a model reads one
    /// self-contained object schema.
    fn parameters() -> Value {
        schema_of::<Self>()
    }
}

/// The schema of `T` as tools present it: inlined, without `$schema`, `title` or the
/// top-level description (the tool's own description carries that).
pub fn schema_of<T: JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
    });
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Value::Object(obj) = &mut value {
        for key in ["$schema", "title", "description"] {
            obj.remove(key);
        }
    }
    value
}

/// What a typed tool does with its (validated, deserialized) arguments.
#[async_trait]
pub trait Run: ToolArgs {
    /// Runs the tool.
    async fn run(self, ctx: &ToolContext) -> Result<ToolOutput, ToolError>;
}

/// Reads validated arguments into `A`, reporting a mismatch as invalid arguments.
pub fn parse_args<A: ToolArgs>(arguments: Value) -> Result<A, ToolError> {
    serde_json::from_value(arguments).map_err(|e| ToolError::InvalidArguments {
        tool: A::NAME.to_string(),
        violations: vec![e.to_string()],
    })
}

/// The [`Tool`] for argument type `A`; see [`typed`].
pub struct Typed<A> {
    _args: PhantomData<fn() -> A>,
}

/// Makes a tool out of an argument type that implements [`Run`].
///
/// ```
/// use k2_tools::{typed, Run, Tool, ToolContext, ToolError, ToolOutput};
///
/// /// Greets someone.
/// #[derive(serde::Deserialize, schemars::JsonSchema, k2_tools::Tool)]
/// struct Greet {
///     /// Who to greet.
///     name: String,
/// }
///
/// #[async_trait::async_trait]
/// impl Run for Greet {
///     async fn run(self, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
///         Ok(ToolOutput::text(format!("Hello, {}!", self.name)))
///     }
/// }
///
/// let tool = typed::<Greet>();
/// assert_eq!(tool.name(), "greet");
/// assert_eq!(tool.description(), "Greets someone.");
/// assert_eq!(tool.parameters()["properties"]["name"]["description"], "Who to greet.");
/// ```
pub fn typed<A: Run>() -> Typed<A> {
    Typed { _args: PhantomData }
}

/// A tool with state of its own (limits, clients, an allow-list) whose arguments are a
/// [`ToolArgs`] type: implement this and it is a [`Tool`], with name, description and schema
/// taken from the argument type.
#[async_trait]
pub trait ToolFn: Send + Sync {
    /// The argument type (usually `#[derive(Tool)]`).
    type Args: ToolArgs;
    /// Runs the tool with validated, deserialized arguments.
    async fn run(&self, args: Self::Args, ctx: &ToolContext) -> Result<ToolOutput, ToolError>;

    /// The argument schema; by default the argument type's. A tool may narrow it to what
    /// this instance accepts (web_fetch limited to its allow-list, say), and the narrower
    /// schema is what arguments are validated against and what the call grammar enforces.
    fn parameters(&self) -> Value {
        Self::Args::parameters()
    }
}

#[async_trait]
impl<T: ToolFn> Tool for T {
    fn name(&self) -> &str {
        T::Args::NAME
    }

    fn description(&self) -> &str {
        T::Args::DESCRIPTION
    }

    fn parameters(&self) -> Value {
        ToolFn::parameters(self)
    }

    async fn call(&self, arguments: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        self.run(parse_args::<T::Args>(arguments)?, ctx).await
    }
}

#[async_trait]
impl<A: Run> ToolFn for Typed<A> {
    type Args = A;

    async fn run(&self, args: A, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        args.run(ctx).await
    }
}
