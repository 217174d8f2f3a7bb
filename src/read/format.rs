//! The formats a Convox app's file comes in, and the environment it is read
//! in: the types that the compose reader (`compose`) and Convox's rules
//! (`manifest`) both speak, below both.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Convox generation 1: services at the top level, no `version:`.
    ConvoxV1,
    /// `services:` with `version: "2"`, `"2.x"`, `"3.x"`, or none (the
    /// compose spec).
    Compose { version: Option<String> },
    /// `convox.yml` of current Convox racks: `services:` whose `build:` is a
    /// path or `{path: DIR, manifest: Dockerfile.x}`.
    ConvoxYml,
}

/// The environment a file is interpolated in.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;
