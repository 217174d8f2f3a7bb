//! Property tests of read + plan + rewrite.
//!
//! 1. Generated compose files, in many layouts, with an independent oracle:
//!    the generator knows which lines are build entries, so it knows the
//!    exact expected output (every other line byte-identical).
//! 2. Arbitrary bytes and mutated valid files: never a panic, and never an
//!    internal error (which is what the plan's read-back check reports when an
//!    accepted input gives an output that does not parse or reads wrongly).
//! 3. The invariant, on every accepted input: by Convox's own rules
//!    (`manifest::convox_builds`), the output leaves nothing for
//!    `convox build` to build.

use offcluster::plan::{self, Options, Output, Target};
use offcluster::read::compose::Compose;
use offcluster::read::manifest;
use proptest::prelude::*;
use std::path::Path;

fn options() -> Options {
    Options {
        app: "app".into(),
        gitsha: Some("sha".into()),
        description: String::new(),
        repo: "reg.example:5000/app".into(),
        region: None,
        registry_host: None,
        tag: offcluster::plan::tag::GITSHA_TEMPLATE.into(),
        output: Output::Stdout,
        cache_expiry_days: 7,
    }
}

fn reference(name: &str) -> String {
    format!("reg.example:5000/app:temp_app_{name}_sha")
}

/// Read and plan; Ok(None) when the input is rejected with a user-facing
/// error.
fn run(bytes: &[u8]) -> Result<Option<String>, String> {
    let compose = match Compose::from_bytes(Path::new("c.yml"), bytes.to_vec(), &|_| None) {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    let opts = options();
    let target = Target::new(&opts).map_err(|e| e.to_string())?;
    match plan::plan(&compose, &opts, &target, None, &|_| Ok("0".repeat(64))) {
        Ok(p) => {
            let after = Compose::from_bytes(
                Path::new("c.yml"),
                p.rewritten.clone().into_bytes(),
                &|_| None,
            )
            .map_err(|e| format!("the output does not read back: {e:#}"))?;
            let left = manifest::convox_builds(&after.doc, &after.format, &|_| None);
            if !left.is_empty() {
                return Err(format!(
                    "Convox would still build {left:?} from:\n{}",
                    p.rewritten
                ));
            }
            Ok(Some(p.rewritten))
        }
        Err(e) if format!("{e:#}").contains("internal error") => Err(format!("{e:#}")),
        Err(_) => Ok(None),
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Short {
        quote: usize,
        comment: bool,
    },
    Long {
        dockerfile: bool,
        args: bool,
        target: bool,
    },
    Image,
    Merge,
    Flow {
        build_first: bool,
    },
    /// No `build:`: Convox builds it from the app root.
    Bare,
    BareFlow,
    Null,
    EmptyFlow,
}

#[derive(Debug, Clone)]
struct Svc {
    kind: Kind,
    context: usize,
    comment_before: bool,
    key_comment: bool,
    command_before: bool,
    env_after: bool,
    blank_after: bool,
}

#[derive(Debug, Clone)]
struct File {
    services: Vec<Svc>,
    nested: bool,
    indent: usize,
    crlf: bool,
    bom: bool,
    final_newline: bool,
    header: bool,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (0..3usize, any::<bool>()).prop_map(|(quote, comment)| Kind::Short { quote, comment }),
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(dockerfile, args, target)| {
            Kind::Long {
                dockerfile,
                args,
                target,
            }
        }),
        Just(Kind::Image),
        Just(Kind::Merge),
        any::<bool>().prop_map(|build_first| Kind::Flow { build_first }),
        Just(Kind::Bare),
        Just(Kind::BareFlow),
        Just(Kind::Null),
        Just(Kind::EmptyFlow),
    ]
}

fn svc() -> impl Strategy<Value = Svc> {
    (
        kind(),
        0..3usize,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                kind,
                context,
                comment_before,
                key_comment,
                command_before,
                env_after,
                blank_after,
            )| Svc {
                kind,
                context,
                comment_before,
                key_comment,
                command_before,
                env_after,
                blank_after,
            },
        )
}

fn file() -> impl Strategy<Value = File> {
    (
        prop::collection::vec(svc(), 1..7),
        any::<bool>(),
        prop_oneof![Just(2usize), Just(4usize)],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(services, nested, indent, crlf, bom, final_newline, header)| File {
                services,
                nested,
                indent,
                crlf,
                bom,
                final_newline,
                header,
            },
        )
}

/// The file's text and the exact text the rewrite must give.
fn render(f: &File) -> (String, String) {
    let mut input: Vec<String> = Vec::new();
    let mut expected: Vec<String> = Vec::new();
    let both = |i: &mut Vec<String>, e: &mut Vec<String>, line: String| {
        i.push(line.clone());
        e.push(line);
    };
    let ind = |n: usize| " ".repeat(n * f.indent);
    let base = if f.nested { 1 } else { 0 };
    if f.header {
        both(&mut input, &mut expected, "# generated — ünïcode ✓".into());
    }
    // Nested: a version 2 file, where a top-level `x-` key is not a
    // service. Else a v1 file, where Convox builds `x-base` too.
    if f.nested {
        both(&mut input, &mut expected, "version: \"2\"".into());
    }
    both(&mut input, &mut expected, "x-base: &base".into());
    input.push(format!("{}build: ./base", ind(1)));
    expected.push(if f.nested {
        format!("{}build: ./base", ind(1))
    } else {
        format!("{}image: {}", ind(1), reference("x-base"))
    });
    if f.nested {
        both(&mut input, &mut expected, "services:".into());
    }
    for (n, s) in f.services.iter().enumerate() {
        let name = format!("s{n}");
        let i0 = ind(base);
        let i1 = ind(base + 1);
        let i2 = ind(base + 2);
        let r = reference(&name);
        if s.comment_before {
            both(&mut input, &mut expected, format!("{i0}# about {name}"));
        }
        let key_comment = if s.key_comment { "   # key" } else { "" };
        let inline = match s.kind {
            Kind::BareFlow => Some((
                "{command: x}".to_string(),
                format!("{{command: x, image: \"{r}\"}}"),
            )),
            Kind::EmptyFlow => Some(("{}".to_string(), format!("{{image: \"{r}\"}}"))),
            Kind::Null => Some((String::new(), format!("{{image: \"{r}\"}}"))),
            _ => None,
        };
        if let Some((value, now)) = inline {
            let sep = if value.is_empty() { "" } else { " " };
            input.push(format!("{i0}{name}:{sep}{value}{key_comment}"));
            expected.push(format!("{i0}{name}: {now}{key_comment}"));
        } else if let Kind::Flow { build_first } = s.kind {
            let (a, b) = (format!("build: ./d{}", s.context), "command: x".to_string());
            let (ea, eb) = (format!("image: \"{r}\""), b.clone());
            if build_first {
                input.push(format!("{i0}{name}: {{{a}, {b}}}"));
                expected.push(format!("{i0}{name}: {{{ea}, {eb}}}"));
            } else {
                input.push(format!("{i0}{name}: {{{b}, {a}}}"));
                expected.push(format!("{i0}{name}: {{{eb}, {ea}}}"));
            }
        } else {
            both(
                &mut input,
                &mut expected,
                format!("{i0}{name}:{key_comment}"),
            );
            if s.command_before {
                both(
                    &mut input,
                    &mut expected,
                    format!("{i1}command: bin/{name} --flag \"q\""),
                );
            }
            match &s.kind {
                Kind::Short { quote, comment } => {
                    let q = ["", "\"", "'"][*quote];
                    let c = if *comment { "  # build here" } else { "" };
                    input.push(format!("{i1}build: {q}./d{}{q}{c}", s.context));
                    expected.push(format!("{i1}image: {r}{c}"));
                }
                Kind::Long {
                    dockerfile,
                    args,
                    target,
                } => {
                    input.push(format!("{i1}build:"));
                    input.push(format!("{i2}context: ./d{}", s.context));
                    if *dockerfile {
                        input.push(format!("{i2}dockerfile: Dockerfile.x"));
                    }
                    if *args {
                        input.push(format!("{i2}args:"));
                        input.push(format!("{i2}{}- A=1", ind(1)));
                    }
                    if *target {
                        input.push(format!("{i2}target: prod"));
                    }
                    expected.push(format!("{i1}image: {r}"));
                }
                Kind::Image => both(&mut input, &mut expected, format!("{i1}image: redis:{n}")),
                Kind::Merge => {
                    both(&mut input, &mut expected, format!("{i1}<<: *base"));
                    expected.push(format!("{i1}image: {r}"));
                }
                Kind::Bare => {
                    both(&mut input, &mut expected, format!("{i1}labels: {{a: b}}"));
                    // The image goes after the service's first entry.
                    let at = expected.len() - usize::from(s.command_before);
                    expected.insert(at, format!("{i1}image: {r}"));
                }
                _ => unreachable!(),
            }
            if s.env_after {
                both(
                    &mut input,
                    &mut expected,
                    format!("{i1}environment: [A=1, \"B=$$x\"]"),
                );
            }
        }
        if s.blank_after {
            both(&mut input, &mut expected, String::new());
        }
    }
    let nl = if f.crlf { "\r\n" } else { "\n" };
    let join = |lines: &[String]| {
        let mut t = String::new();
        if f.bom {
            t.push('\u{feff}');
        }
        t.push_str(&lines.join(nl));
        if f.final_newline {
            t.push_str(nl);
        }
        t
    };
    (join(&input), join(&expected))
}

/// Every compose file among the fixtures, as seeds for mutation.
fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yml") {
                files.extend(std::fs::read(&p));
            }
        }
    }
    files.sort();
    files
}

fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    // Mostly YAML's own punctuation, which makes interesting shapes.
    const PUNCT: &[u8] = b":-{}[],#&*!|>'\"%@` \n\t$";
    for (at, byte, op) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = at.index(bytes.len());
        let b = PUNCT[usize::from(*byte) % PUNCT.len()];
        match op {
            0 => bytes[i] = b,
            1 => bytes.insert(i, b),
            _ => {
                bytes.remove(i);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn generated_files_rewrite_to_exactly_the_oracles_text(f in file()) {
        let (input, expected) = render(&f);
        let got = run(input.as_bytes());
        prop_assert_eq!(got, Ok(Some(expected)), "input:\n{}", input);
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_break_the_rewrite(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert!(run(&bytes).is_ok());
    }

    #[test]
    fn mutated_valid_files_never_panic_or_break_the_rewrite(
        f in file(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
    ) {
        let (input, _) = render(&f);
        let bytes = mutate(input.into_bytes(), &edits);
        prop_assert!(run(&bytes).is_ok(), "input: {:?}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_fixtures_never_panic_or_break_the_rewrite(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
    ) {
        let files = corpus();
        prop_assert!(!files.is_empty());
        let bytes = mutate(files[seed.index(files.len())].clone(), &edits);
        prop_assert!(run(&bytes).is_ok(), "input: {:?}", String::from_utf8_lossy(&bytes));
    }
}
