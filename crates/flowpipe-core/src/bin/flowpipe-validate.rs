//! `flowpipe-validate`: checks FlowSpec JSON with the API's own rules, without a server.
//!
//! A thin binary over the portable core: it reads files (or standard input), and everything else
//! is the library, exactly as the API calls it for `POST /v1/flows` (`json::decode_flow_spec`,
//! then `ValidSpec::for_create`). The same violations, field paths and messages as the API's 400
//! answer, wherever it runs: natively, or as `flowpipe-validate.wasm` under any WASI runtime.
//! `flowpipe-validate --help` says how it reads and what it prints.

use std::io::{self, Read, Write};
use std::process::ExitCode;

use flowpipe_core::json::decode_flow_spec;
use flowpipe_core::{Detail, Error, ValidSpec};

const USAGE: &str = "\
usage: flowpipe-validate [--json] [FILE...]

Checks FlowSpec JSON against the flow-pipe API's own rules, offline. Each FILE (standard input
when none is given, or for `-`) is one FlowSpec in proto3 JSON, exactly the body that
`POST /v1/flows` takes (lowerCamelCase or snake_case names, the \"mode\" shorthand, no unknown
fields), and is checked as CreateFlow checks it: every violation is reported with its field path
and the API's own words. What only the store can tell (a live flow of that name with another
spec) is not checked.

Output, one input after another in the order given (standard input is named <stdin>):
  a valid input      FILE: valid
  an invalid input   FILE: FIELD: DESCRIPTION   one line per violation, as the API's 400 lists
                                                them (FILE: DESCRIPTION for one with no field)
  an unreadable one  flowpipe-validate: FILE: WHY   on standard error

  --json       instead, one line per input on standard output, each a google.rpc.Status as JSON:
               an invalid input's is exactly the API's 400 body (code 3, ErrorInfo, BadRequest
               with every field violation); a valid input's is {\"code\":0,\"message\":\"\",\"details\":[]};
               an unreadable input's has code 3 and ErrorInfo reason UNREADABLE_INPUT, with the
               file in its metadata (and WHY is also printed on standard error). Line N is input N.
  -h, --help   this text
  --version    the version
  --           every later argument is a FILE

Exit status: 0 every input is valid; 1 some input is invalid; 2 some input could not be read
(missing, not UTF-8, ...) or the arguments are wrong (2 wins over 1).
";

/// `ErrorInfo.reason` of an input that could not be read (never one of the API's own reasons).
const UNREADABLE_INPUT: &str = "UNREADABLE_INPUT";

/// What one input turned out to be.
enum Outcome {
    Valid,
    Invalid(Error),
    /// Why it could not be read, for people.
    Unreadable(String),
}

/// An input: a file, or standard input (`None`).
struct Input {
    path: Option<String>,
}

impl Input {
    fn name(&self) -> &str {
        self.path.as_deref().unwrap_or("<stdin>")
    }

    fn read(&self) -> Result<Vec<u8>, String> {
        match &self.path {
            Some(path) => std::fs::read(path).map_err(|e| format!("cannot read: {}", io_why(&e))),
            None => {
                let mut bytes = Vec::new();
                io::stdin()
                    .lock()
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("cannot read standard input: {}", io_why(&e)))?;
                Ok(bytes)
            }
        }
    }
}

/// An I/O error for people: its kind ("entity not found" says less than "no such file").
fn io_why(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::IsADirectory => "is a directory, not a file".to_string(),
        _ => e.to_string(),
    }
}

/// Checks one input's bytes as CreateFlow does.
fn check(bytes: &[u8]) -> Outcome {
    // The API reads any bytes as JSON; a file that is not text at all is a wrong file, not a
    // wrong spec.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Outcome::Unreadable(format!(
            "not UTF-8 text (invalid byte at offset {}); expected a FlowSpec as JSON",
            e.valid_up_to()
        ));
    }
    match decode_flow_spec(bytes).and_then(ValidSpec::for_create) {
        Ok(_) => Outcome::Valid,
        Err(e) => Outcome::Invalid(e),
    }
}

/// The text report of one input, on `out` (violations) or `err` (why it was unreadable).
fn report_text(
    name: &str,
    outcome: &Outcome,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<()> {
    match outcome {
        Outcome::Valid => writeln!(out, "{name}: valid"),
        Outcome::Invalid(e) if e.violations().is_empty() => {
            writeln!(out, "{name}: {}", e.message())
        }
        Outcome::Invalid(e) => {
            for v in e.violations() {
                if v.field.is_empty() {
                    writeln!(out, "{name}: {}", v.description)?;
                } else {
                    writeln!(out, "{name}: {}: {}", v.field, v.description)?;
                }
            }
            Ok(())
        }
        Outcome::Unreadable(why) => writeln!(err, "flowpipe-validate: {name}: {why}"),
    }
}

/// The `--json` line of one input: a `google.rpc.Status`.
fn status_json(name: &str, outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Valid => serde_json::json!({"code": 0, "message": "", "details": []}),
        Outcome::Invalid(e) => e.status_json(),
        Outcome::Unreadable(why) => Error::InvalidArgument {
            detail: Detail::new(UNREADABLE_INPUT, format!("{name}: {why}")).with("file", name),
            violations: Vec::new(),
        }
        .status_json(),
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Version,
    Check {
        json: bool,
        paths: Vec<Option<String>>,
    },
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut json = false;
    let mut paths = Vec::new();
    let mut options_done = false;
    for arg in args {
        if options_done {
            paths.push(Some(arg));
            continue;
        }
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--version" => return Ok(Command::Version),
            "--json" => json = true,
            "--" => options_done = true,
            "-" => paths.push(None),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => paths.push(Some(arg)),
        }
    }
    if paths.is_empty() {
        paths.push(None);
    }
    Ok(Command::Check { json, paths })
}

/// Checks every input, reporting on `out` and `err`; returns the exit status.
fn run(json: bool, inputs: &[Input], out: &mut impl Write, err: &mut impl Write) -> io::Result<u8> {
    let mut status = 0;
    for input in inputs {
        let outcome = match input.read() {
            Ok(bytes) => check(&bytes),
            Err(why) => Outcome::Unreadable(why),
        };
        status = status.max(match outcome {
            Outcome::Valid => 0,
            Outcome::Invalid(_) => 1,
            Outcome::Unreadable(_) => 2,
        });
        if json {
            if let Outcome::Unreadable(why) = &outcome {
                writeln!(err, "flowpipe-validate: {}: {why}", input.name())?;
            }
            writeln!(out, "{}", status_json(input.name(), &outcome))?;
        } else {
            report_text(input.name(), &outcome, out, err)?;
        }
    }
    Ok(status)
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("flowpipe-validate: {why} (flowpipe-validate --help says what it takes)");
            return ExitCode::from(2);
        }
    };
    let (json, paths) = match command {
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("flowpipe-validate {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Check { json, paths } => (json, paths),
    };
    let inputs: Vec<Input> = paths.into_iter().map(|path| Input { path }).collect();
    let stdout = io::stdout();
    let stderr = io::stderr();
    match run(json, &inputs, &mut stdout.lock(), &mut stderr.lock()) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            // Standard output closed under us (a pipe into `head`): nothing more can be said.
            let _ = writeln!(
                io::stderr(),
                "flowpipe-validate: cannot write the report: {e}"
            );
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The binary's own logic; the outputs against the API's are compared by flowpipe-api's
    //! tests (tests/api/validate.rs), natively and under wasmtime.
    use super::*;

    fn text(bytes: &str) -> String {
        let mut out = Vec::new();
        let mut err = Vec::new();
        report_text("f.json", &check(bytes.as_bytes()), &mut out, &mut err).unwrap();
        assert!(err.is_empty());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_valid_spec_is_one_line() {
        assert_eq!(
            text(r#"{"name":"example","mode":"JOB"}"#),
            "f.json: valid\n"
        );
    }

    #[test]
    fn every_violation_is_a_line_with_its_field() {
        let out = text(r#"{"name":"Bad_Name","stages":[{"name":"s","threads":0}]}"#);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("f.json: name: "), "{out}");
        assert!(lines[1].starts_with("f.json: stages[0].type: "), "{out}");
        assert!(lines[2].starts_with("f.json: stages[0].threads: "), "{out}");
    }

    #[test]
    fn not_utf8_is_unreadable_not_invalid() {
        assert!(
            matches!(check(b"{\"name\":\"\xff\"}"), Outcome::Unreadable(w) if w.contains("offset 9"))
        );
    }

    #[test]
    fn json_lines_are_statuses() {
        assert_eq!(
            status_json("f", &check(br#"{"name":"ok"}"#)),
            serde_json::json!({"code": 0, "message": "", "details": []})
        );
        let e = decode_flow_spec(b"{}")
            .and_then(ValidSpec::for_create)
            .unwrap_err();
        assert_eq!(status_json("f", &check(b"{}")), e.status_json());
        let unreadable = status_json("f", &Outcome::Unreadable("no such file".into()));
        assert_eq!(unreadable["code"], 3);
        assert_eq!(unreadable["details"][0]["reason"], UNREADABLE_INPUT);
        assert_eq!(unreadable["details"][0]["metadata"]["file"], "f");
    }

    #[test]
    fn arguments() {
        let args = |a: &[&str]| parse_args(a.iter().map(|s| (*s).to_string()));
        assert_eq!(
            args(&[]),
            Ok(Command::Check {
                json: false,
                paths: vec![None]
            })
        );
        assert_eq!(
            args(&["--json", "a", "-", "--", "--json"]),
            Ok(Command::Check {
                json: true,
                paths: vec![Some("a".into()), None, Some("--json".into())]
            })
        );
        assert_eq!(args(&["a", "--help"]), Ok(Command::Help));
        assert!(args(&["--jsn"]).unwrap_err().contains("--jsn"));
    }
}
