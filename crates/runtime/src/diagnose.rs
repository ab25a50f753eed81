//! Error diagnosis: turn a finished run's stderr, plus what the supervisor knows about how
//! the run ended, into DESIGN §8's `error` object with a one-line hint.
//!
//! Everything here is hand-written parsing over `&str`. It never panics on any input: every
//! slice is taken at a position returned by a `str` search or checked with
//! `is_char_boundary`, and only the last [`PARSE_WINDOW`] bytes of stderr are looked at, so
//! a flood of output costs linear time and bounded memory.
//!
//! The user's code runs from [`PYTHON_MAIN`], [`JAVASCRIPT_MAIN`] or [`SHELL_MAIN`]; `file`
//! and `line` point at the innermost frame in a user file (anything under `/airlock/` or
//! `/workspace/` that is not an installed package), else the innermost frame outside the
//! interpreter's own library and installed packages, else the innermost frame.
//!
//! [`diagnose`] decides by precedence: timeout, memory limit, signal, parsed error, exit
//! code. [`hint_for`] maps a `(type, message)` pair to one line of advice.

use serde::{Deserialize, Serialize};

/// Where the supervisor puts a Python program.
pub const PYTHON_MAIN: &str = "/airlock/main.py";
/// Where the supervisor puts a JavaScript (node) program.
pub const JAVASCRIPT_MAIN: &str = "/airlock/main.js";
/// Where the supervisor puts a shell (bash) program.
pub const SHELL_MAIN: &str = "/airlock/main.sh";

/// `ErrorInfo::traceback` keeps at most the last this many bytes.
pub const TRACEBACK_LIMIT: usize = 64 * 1024;
/// `ErrorInfo::message` keeps at most the first this many bytes.
pub const MESSAGE_LIMIT: usize = 8 * 1024;
/// Only the last this many bytes of stderr are parsed (errors are printed last).
pub const PARSE_WINDOW: usize = 1024 * 1024;

/// DESIGN §8's `error` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// e.g. "ZeroDivisionError", "ReferenceError", "CommandNotFound", "Timeout", "MemoryLimit".
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub line: Option<u32>,
    pub file: Option<String>,
    pub hint: Option<String>,
    pub traceback: Option<String>,
}

impl ErrorInfo {
    pub(crate) fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorInfo {
            kind: kind.into(),
            message: message.into(),
            line: None,
            file: None,
            hint: None,
            traceback: None,
        }
    }
}

/// The language a run was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    Python,
    JavaScript,
    Shell,
}

/// What the supervisor knows about how the run ended, besides stderr.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ending {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub memory_limit: bool,
    /// The sandbox's init died before it reported the program's status: `exit_code` and
    /// `signal` are the init's.
    pub init_died: bool,
    pub network_none: bool,
    pub timeout_secs: f64,
    pub memory_mb: u64,
}

/// Diagnose a finished run.
///
/// None when the run succeeded (exit 0, no timeout, no memory limit) and nothing went wrong.
/// Precedence: timeout, then the memory limit (unless the language itself reported running
/// out of memory), then the sandbox's init dying, then a signal (unless the language reported
/// running out of memory), then the error parsed from stderr, then a bare non-zero exit code.
pub fn diagnose(lang: Language, stderr: &str, ending: &Ending) -> Option<ErrorInfo> {
    if ending.timed_out {
        let mut info = ErrorInfo::new("Timeout", timeout_message(ending));
        info.hint = hint_for(&info.kind, &info.message, ending);
        return Some(info);
    }
    let failed = ending.memory_limit
        || ending.init_died
        || ending.signal.is_some()
        || ending.exit_code.is_some_and(|code| code != 0);
    if !failed && ending.exit_code == Some(0) {
        return None;
    }
    let parsed = parse(lang, stderr);
    let mut info = if ending.memory_limit {
        match parsed {
            Some(p) if is_memory_kind(&p.kind) => p,
            _ => ErrorInfo::new("MemoryLimit", memory_message(ending)),
        }
    } else if ending.init_died {
        ErrorInfo {
            hint: Some(INIT_DIED_HINT.into()),
            ..ErrorInfo::new("SandboxKilled", init_died_message(ending))
        }
    } else if let Some(sig) = ending.signal {
        match parsed {
            Some(p) if is_memory_kind(&p.kind) => p,
            Some(p) if lang != Language::Shell => ErrorInfo {
                kind: "Signal".into(),
                message: signal_message(sig),
                hint: None,
                ..p
            },
            _ => ErrorInfo::new("Signal", signal_message(sig)),
        }
    } else if let Some(p) = parsed {
        p
    } else {
        match ending.exit_code {
            Some(code) if code != 0 => {
                ErrorInfo::new("NonZeroExit", format!("exited with code {code}"))
            }
            _ => return None,
        }
    };
    if info.hint.is_none() {
        info.hint = hint_for(&info.kind, &info.message, ending);
    }
    Some(info)
}

fn is_memory_kind(kind: &str) -> bool {
    matches!(short_kind(kind), "MemoryError" | "MemoryLimit")
}

fn short_kind(kind: &str) -> &str {
    kind.rsplit('.').next().unwrap_or(kind)
}

fn timeout_message(ending: &Ending) -> String {
    if ending.timeout_secs.is_finite() && ending.timeout_secs > 0.0 {
        format!("timed out after {} s", ending.timeout_secs)
    } else {
        "timed out".to_string()
    }
}

fn memory_message(ending: &Ending) -> String {
    if ending.memory_mb > 0 {
        format!("exceeded the memory limit of {} MiB", ending.memory_mb)
    } else {
        "exceeded the memory limit".to_string()
    }
}

/// Why a sandbox's init dies: nothing inside the sandbox can signal it, and the memory limit
/// would have been reported as such.
const INIT_DIED_HINT: &str = "something outside the sandbox ended it: the host's OOM killer \
     (see dmesg), an administrator or a service manager; or the program lowered the init's CPU \
     limit (prlimit). Run it again if it should have finished";

fn init_died_message(ending: &Ending) -> String {
    let how = match (ending.signal, ending.exit_code) {
        (Some(sig), _) => format!("was {}", signal_message(sig)),
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => "ended".to_string(),
    };
    format!(
        "the sandbox's init (pid 1) {how} before the program ended; how the program itself \
         ended is unknown"
    )
}

fn signal_message(sig: i32) -> String {
    match signal_name(sig) {
        Some(name) => format!("killed by signal {sig} ({name})"),
        None => format!("killed by signal {sig}"),
    }
}

/// The conventional Linux name of a signal number.
pub fn signal_name(sig: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    let idx = usize::try_from(sig).ok()?.checked_sub(1)?;
    NAMES.get(idx).copied()
}

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

/// One stack frame: a file and maybe a line.
#[derive(Clone, Copy, Debug)]
struct Frame<'a> {
    file: &'a str,
    line: Option<u32>,
}

/// A parsed error plus the index of the line that identifies it, so that when several
/// parsers find something the latest one wins.
struct Found {
    info: ErrorInfo,
    anchor: usize,
}

fn parse(lang: Language, stderr: &str) -> Option<ErrorInfo> {
    let window = tail(stderr, PARSE_WINDOW);
    let cleaned;
    let text = if window.contains('\u{1b}') {
        cleaned = strip_ansi(window);
        cleaned.as_str()
    } else {
        window
    };
    let lines: Vec<&str> = text.lines().collect();
    let found = match lang {
        Language::Python => parse_python(&lines, false),
        Language::JavaScript => parse_node(&lines),
        Language::Shell => [
            parse_shell(&lines),
            parse_python(&lines, true),
            parse_node(&lines),
        ]
        .into_iter()
        .flatten()
        .max_by_key(|f| f.anchor),
    };
    found.map(|f| f.info)
}

/// The last `max` bytes of `s`, starting at a char boundary.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The first `max` bytes of `s`, ending at a char boundary.
fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Remove ANSI escape sequences (CSI `ESC [ ... final`, and two-byte `ESC x`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // `ESC [ ... final`: skip to the final byte. Any other `ESC x`: drop both.
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

fn join_lines(lines: &[&str]) -> String {
    lines.join("\n")
}

fn bounded_traceback(lines: &[&str]) -> Option<String> {
    if lines.is_empty() {
        return None;
    }
    let text = join_lines(lines);
    let text = text.trim_end();
    if text.is_empty() {
        return None;
    }
    Some(tail(text, TRACEBACK_LIMIT).to_string())
}

fn bounded_message(s: &str) -> String {
    head(s.trim_end(), MESSAGE_LIMIT).to_string()
}

/// Index of the last non-blank line in `lines[from..]`, or `from` when all are blank.
fn last_nonblank(lines: &[&str], from: usize) -> usize {
    (from..lines.len())
        .rev()
        .find(|&i| !lines[i].trim().is_empty())
        .unwrap_or(from)
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Is this path one of the user's own files?
fn is_user_file(path: &str) -> bool {
    (path.starts_with("/airlock/") || path.starts_with("/workspace/")) && !is_library(path)
}

/// Is this path part of an interpreter's own library or an installed package?
fn is_library(path: &str) -> bool {
    if path.starts_with("node:") {
        return true;
    }
    if path.starts_with('<') {
        return !matches!(path, "<string>" | "<stdin>");
    }
    path.contains("/site-packages/")
        || path.contains("/dist-packages/")
        || path.contains("/node_modules/")
        || path.contains("/lib/python")
        || path.contains("/lib64/python")
}

/// Pick the frame to report: innermost user frame, else innermost non-library frame, else
/// innermost frame.
fn choose_frame<'a>(frames: &[Frame<'a>], innermost_first: bool) -> Option<Frame<'a>> {
    let pick = |pred: &dyn Fn(&Frame<'a>) -> bool| -> Option<Frame<'a>> {
        if innermost_first {
            frames.iter().find(|f| pred(f)).copied()
        } else {
            frames.iter().rev().find(|f| pred(f)).copied()
        }
    };
    pick(&|f| is_user_file(f.file))
        .or_else(|| pick(&|f| !is_library(f.file)))
        .or_else(|| pick(&|_| true))
}

fn set_location(info: &mut ErrorInfo, frame: Option<Frame<'_>>) {
    if let Some(f) = frame {
        info.file = Some(f.file.to_string());
        info.line = f.line;
    }
}

// ---------------------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------------------

const PY_HEADER: &str = "Traceback (most recent call last):";
const PY_GROUP_HEADER: &str = "  + Exception Group Traceback (most recent call last):";
const PY_CONNECTORS: [&str; 2] = [
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
];
const PY_SYNTAX_KINDS: [&str; 3] = ["SyntaxError", "IndentationError", "TabError"];
const PY_FATAL: &str = "Fatal Python error: ";

fn is_py_header(line: &str) -> bool {
    let line = line.trim_end();
    line == PY_HEADER || line == PY_GROUP_HEADER
}

fn is_py_syntax_line(line: &str) -> bool {
    PY_SYNTAX_KINDS.iter().any(|k| {
        line.strip_prefix(k)
            .is_some_and(|rest| rest.trim_end().is_empty() || rest.starts_with(':'))
    })
}

/// `  File "/airlock/main.py", line 7, in <module>` (also the syntax-error and faulthandler
/// forms `  File "...", line 2` and `  File "...", line 2 in f`).
fn parse_py_frame(line: &str) -> Option<Frame<'_>> {
    let rest = line.strip_prefix("  File \"")?;
    let idx = rest.rfind("\", line ")?;
    let file = &rest[..idx];
    let after = &rest[idx + "\", line ".len()..];
    let digits_end = after
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after.len());
    let line_no = after[..digits_end].parse::<u32>().ok();
    Some(Frame {
        file,
        line: line_no,
    })
}

/// A Python exception type name as printed: dotted identifiers, maybe with `<locals>`.
fn is_py_exc_name(name: &str) -> bool {
    let Some(first) = name.chars().next() else {
        return false;
    };
    name.len() <= 256
        && (first.is_alphabetic() || first == '_')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '<' | '>'))
}

/// Split `Type: message` / `Type` into its parts.
fn split_py_exception(line: &str) -> (String, String) {
    let line = line.trim_end();
    if let Some((kind, msg)) = line.split_once(": ")
        && is_py_exc_name(kind)
    {
        return (kind.to_string(), msg.to_string());
    }
    let bare = line.strip_suffix(':').unwrap_or(line);
    if is_py_exc_name(bare) {
        return (bare.to_string(), String::new());
    }
    ("Error".to_string(), line.to_string())
}

fn parse_python(lines: &[&str], in_shell: bool) -> Option<Found> {
    let traceback = lines
        .iter()
        .rposition(|l| is_py_header(l))
        .and_then(|h| py_traceback(lines, h, in_shell));
    let after = traceback.as_ref().map_or(0, |t| t.anchor + 1);
    let syntax = lines
        .get(after..)
        .and_then(|rest| rest.iter().rposition(|l| is_py_syntax_line(l)))
        .map(|i| py_syntax(lines, i + after));
    let fatal = lines
        .iter()
        .rposition(|l| l.starts_with(PY_FATAL))
        .map(|i| py_fatal(lines, i));
    [traceback, syntax, fatal]
        .into_iter()
        .flatten()
        .max_by_key(|f| f.anchor)
}

/// Walk back from the last header over "During handling ..." / "The above exception ..."
/// connectors to the first traceback of the chain.
fn py_chain_start(lines: &[&str], header: usize) -> usize {
    let mut start = header;
    loop {
        let mut j = start;
        while j > 0 && lines[j - 1].trim().is_empty() {
            j -= 1;
        }
        if j == 0 || !PY_CONNECTORS.contains(&lines[j - 1].trim_end()) {
            return start;
        }
        match lines[..j - 1].iter().rposition(|l| is_py_header(l)) {
            Some(prev) => start = prev,
            None => return start,
        }
    }
}

struct PyBlock<'a> {
    kind: String,
    message: String,
    frames: Vec<Frame<'a>>,
    exc: usize,
    end: usize,
}

fn py_traceback(lines: &[&str], header: usize, in_shell: bool) -> Option<Found> {
    let block = if lines[header].trim_end() == PY_GROUP_HEADER {
        py_group_block(lines, header)?
    } else {
        py_plain_block(lines, header, in_shell)?
    };
    let start = py_chain_start(lines, header);
    let mut info = ErrorInfo::new(block.kind, bounded_message(&block.message));
    set_location(&mut info, choose_frame(&block.frames, false));
    info.traceback = bounded_traceback(lines.get(start..=block.end).unwrap_or(&[]));
    Some(Found {
        info,
        anchor: block.exc,
    })
}

fn py_plain_block<'a>(lines: &[&'a str], header: usize, in_shell: bool) -> Option<PyBlock<'a>> {
    let mut frames = Vec::new();
    let mut i = header + 1;
    while let Some(l) = lines.get(i) {
        if l.trim().is_empty() || l.starts_with(' ') || l.starts_with('\t') {
            if let Some(f) = parse_py_frame(l) {
                frames.push(f);
            }
            i += 1;
        } else {
            break;
        }
    }
    let exc_line = lines.get(i)?;
    let (kind, first) = split_py_exception(exc_line);
    // A multi-line message runs to the end (stopping at a shell error line when a shell
    // script ran python).
    let mut end = i;
    let mut j = i + 1;
    while let Some(l) = lines.get(j) {
        if in_shell && parse_bash_line(l).is_some() {
            break;
        }
        if !l.trim().is_empty() {
            end = j;
        }
        j += 1;
        if j - i > 10_000 {
            break;
        }
    }
    let mut message = first;
    for l in lines.get(i + 1..=end).unwrap_or(&[]) {
        if message.len() > MESSAGE_LIMIT {
            break;
        }
        message.push('\n');
        message.push_str(l);
    }
    Some(PyBlock {
        kind,
        message,
        frames,
        exc: i,
        end,
    })
}

/// `  + Exception Group Traceback` ... `  | ExceptionGroup: msg (n sub-exceptions)` then
/// the `+-+---- 1 ----` sub-exception boxes.
fn py_group_block<'a>(lines: &[&'a str], header: usize) -> Option<PyBlock<'a>> {
    let mut frames = Vec::new();
    let mut exc: Option<(usize, String, String)> = None;
    let mut end = header;
    let mut i = header + 1;
    while let Some(l) = lines.get(i) {
        let l = l.trim_end();
        if let Some(rest) = l.strip_prefix("  |") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            if exc.is_none() {
                if rest.starts_with(' ') {
                    if let Some(f) = parse_py_frame(rest) {
                        frames.push(f);
                    }
                } else if !rest.is_empty() {
                    let (kind, msg) = split_py_exception(rest);
                    exc = Some((i, kind, msg));
                }
            }
            end = i;
        } else if l.starts_with("  +") || l.starts_with("    ") {
            end = i;
        } else {
            break;
        }
        i += 1;
    }
    let (exc, kind, message) = exc?;
    Some(PyBlock {
        kind,
        message,
        frames,
        exc,
        end,
    })
}

/// A top-level `SyntaxError` / `IndentationError` / `TabError`, printed without a
/// `Traceback` header: `  File "...", line N`, the source line, carets, then the error.
fn py_syntax(lines: &[&str], at: usize) -> Found {
    let file_idx = (at.saturating_sub(8)..at)
        .rev()
        .find(|&k| parse_py_frame(lines[k]).is_some());
    let frame = file_idx.and_then(|k| parse_py_frame(lines[k]));
    let (kind, message) = split_py_exception(lines[at]);
    let mut info = ErrorInfo::new(kind, bounded_message(&message));
    if frame.is_some() {
        set_location(&mut info, frame);
    } else if let Some((file, line)) = py_syntax_location_in_message(&message) {
        info.file = Some(file.to_string());
        info.line = Some(line);
    }
    info.traceback = bounded_traceback(lines.get(file_idx.unwrap_or(at)..=at).unwrap_or(&[]));
    Found { info, anchor: at }
}

/// `Non-UTF-8 code starting with '\xff' in file /airlock/main.py on line 1, ...`
fn py_syntax_location_in_message(message: &str) -> Option<(&str, u32)> {
    let (_, rest) = message.split_once(" in file ")?;
    let (file, rest) = rest.split_once(" on line ")?;
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let line = rest[..digits_end].parse().ok()?;
    Some((file, line))
}

/// `Fatal Python error: Segmentation fault` followed by a faulthandler dump (most recent
/// call first).
fn py_fatal(lines: &[&str], at: usize) -> Found {
    let message = lines[at].get(PY_FATAL.len()..).unwrap_or("").trim();
    let end = last_nonblank(lines, at);
    let frames: Vec<Frame<'_>> = lines
        .get(at + 1..=end)
        .unwrap_or(&[])
        .iter()
        .filter_map(|l| parse_py_frame(l))
        .collect();
    let mut info = ErrorInfo::new("FatalPythonError", bounded_message(message));
    set_location(&mut info, choose_frame(&frames, true));
    info.traceback = bounded_traceback(lines.get(at..=end).unwrap_or(&[]));
    Found { info, anchor: at }
}

// ---------------------------------------------------------------------------------------
// JavaScript (node)
// ---------------------------------------------------------------------------------------

fn parse_node(lines: &[&str]) -> Option<Found> {
    let fatal = node_fatal(lines);
    let uncaught = node_uncaught(lines);
    [fatal, uncaught]
        .into_iter()
        .flatten()
        .max_by_key(|f| f.anchor)
}

/// `FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory`.
fn node_fatal(lines: &[&str]) -> Option<Found> {
    let at = lines.iter().rposition(|l| l.contains("FATAL ERROR:"))?;
    let message = lines[at]
        .split_once("FATAL ERROR:")
        .map_or("", |(_, m)| m)
        .trim();
    let oom = message.contains("heap out of memory")
        || message.contains("Reached heap limit")
        || message.contains("Allocation failed");
    let kind = if oom { "MemoryLimit" } else { "FatalError" };
    let start = (at.saturating_sub(64)..at)
        .rev()
        .find(|&k| lines[k].trim() == "<--- Last few GCs --->")
        .unwrap_or(at);
    let end = last_nonblank(lines, at);
    let mut info = ErrorInfo::new(kind, bounded_message(message));
    info.traceback = bounded_traceback(lines.get(start..=end).unwrap_or(&[]));
    Some(Found { info, anchor: at })
}

/// `/airlock/main.js:12` (or `file:///airlock/main.mjs:3`, `node:internal/...:1210`).
fn parse_node_location(line: &str) -> Option<Frame<'_>> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let (path, num) = line.trim_end().rsplit_once(':')?;
    if path.is_empty() || !all_digits(num) {
        return None;
    }
    Some(Frame {
        file: strip_file_url(path),
        line: num.parse().ok(),
    })
}

fn strip_file_url(path: &str) -> &str {
    path.strip_prefix("file://").unwrap_or(path)
}

fn is_caret_line(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && t.bytes().all(|b| b == b'^')
}

/// `    at f (/airlock/main.js:2:14)`, `    at /airlock/main.js:4:20`,
/// `    at async main (/airlock/main.js:2:13)`.
fn parse_js_frame(line: &str) -> Option<Frame<'_>> {
    let rest = line.strip_prefix("    at ")?.trim_end();
    let rest = rest.strip_suffix(" {").unwrap_or(rest).trim_end();
    let loc = match rest.strip_suffix(')') {
        Some(inner) => &inner[inner.rfind('(')? + 1..],
        None => rest.strip_prefix("async ").unwrap_or(rest),
    };
    parse_js_loc(loc)
}

/// `path:line:col` or `path:line`.
fn parse_js_loc(loc: &str) -> Option<Frame<'_>> {
    let (a, last) = loc.rsplit_once(':')?;
    if !all_digits(last) {
        return None;
    }
    let (path, line) = match a.rsplit_once(':') {
        Some((p, mid)) if all_digits(mid) => (p, mid),
        _ => (a, last),
    };
    if path.is_empty() {
        return None;
    }
    Some(Frame {
        file: strip_file_url(path),
        line: line.parse().ok(),
    })
}

/// `TypeError: msg`, `Error [ERR_MODULE_NOT_FOUND]: msg`, `Error` -> (name, message).
fn split_js_error(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_end();
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix(" [") {
        let close = r.find(']')?;
        let code = &r[..close];
        if code.is_empty() || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        rest = &r[close + 1..];
    }
    if rest.is_empty() {
        return Some((name, ""));
    }
    rest.strip_prefix(": ").map(|msg| (name, msg))
}

fn looks_like_js_error_name(name: &str) -> bool {
    name.ends_with("Error") || name.ends_with("Exception") || name == "UnhandledPromiseRejection"
}

fn node_uncaught(lines: &[&str]) -> Option<Found> {
    let region_end = lines
        .iter()
        .rposition(|l| l.starts_with("Node.js v"))
        .unwrap_or(lines.len());
    let region = &lines[..region_end];
    // The header: location, source line, caret line.
    let header = (2..region.len())
        .rev()
        .find(|&i| is_caret_line(region[i]) && parse_node_location(region[i - 2]).is_some())
        .map(|i| i - 2);
    let body = match header {
        Some(h) => {
            let mut i = h + 3;
            while region.get(i).is_some_and(|l| l.trim().is_empty()) {
                i += 1;
            }
            i
        }
        None => (0..region.len().saturating_sub(1)).rev().find(|&i| {
            split_js_error(region[i]).is_some() && region[i + 1].starts_with("    at ")
        })?,
    };
    let first = *region.get(body)?;
    let mut msg_end = body;
    let mut j = body + 1;
    while let Some(l) = region.get(j) {
        if l.starts_with("    at ") || l.starts_with("(Use `node --trace-uncaught") {
            break;
        }
        if !l.trim().is_empty() {
            msg_end = j;
        }
        j += 1;
    }
    let stack = region.get(j..).unwrap_or(&[]);
    let mut frames: Vec<Frame<'_>> = Vec::new();
    if let Some(h) = header {
        frames.extend(parse_node_location(region[h]));
    }
    frames.extend(stack.iter().filter_map(|l| parse_js_frame(l)));
    let has_stack = stack.iter().any(|l| l.starts_with("    at "));
    let cause = stack.iter().find_map(|l| {
        let c = l.trim_start().strip_prefix("[cause]: ")?.trim_end();
        Some(c.strip_suffix(" {").unwrap_or(c).trim_end())
    });
    let continuation = region.get(body + 1..=msg_end).unwrap_or(&[]);

    let (kind, mut message) = match split_js_error(first) {
        Some((name, msg)) if has_stack || looks_like_js_error_name(name) => {
            let mut message = msg.to_string();
            for l in continuation {
                if message.len() > MESSAGE_LIMIT {
                    break;
                }
                message.push('\n');
                message.push_str(l);
            }
            if let Some(idx) = message.find("\nRequire stack:") {
                message.truncate(idx);
            }
            if name == "UnhandledPromiseRejection"
                && let Some(idx) = message.find("The promise rejected with the reason ")
            {
                message = message[idx..].to_string();
            }
            (name.to_string(), message)
        }
        _ => {
            // `throw "x"` / `throw 42` / `throw {...}`: node prints the value itself.
            let mut value = first.to_string();
            for l in continuation {
                if value.len() > MESSAGE_LIMIT {
                    break;
                }
                value.push('\n');
                value.push_str(l);
            }
            ("Uncaught".to_string(), value)
        }
    };
    if let Some(cause) = cause {
        message.push_str(&format!(" (cause: {cause})"));
    }
    let mut info = ErrorInfo::new(kind, bounded_message(&message));
    set_location(&mut info, choose_frame(&frames, true));
    let start = header.unwrap_or(body);
    let end = last_nonblank(region, start);
    info.traceback = bounded_traceback(region.get(start..=end).unwrap_or(&[]));
    Some(Found { info, anchor: body })
}

// ---------------------------------------------------------------------------------------
// Shell (bash)
// ---------------------------------------------------------------------------------------

/// `/airlock/main.sh: line 3: foo: command not found` -> (prefix, line, rest).
struct BashLine<'a> {
    prefix: &'a str,
    line: Option<u32>,
    rest: &'a str,
}

fn parse_bash_line(line: &str) -> Option<BashLine<'_>> {
    let idx = line.find(": line ")?;
    let prefix = &line[..idx];
    if prefix.is_empty() || prefix.starts_with(char::is_whitespace) {
        return None;
    }
    let after = &line[idx + ": line ".len()..];
    let colon = after.find(": ")?;
    let num = &after[..colon];
    if !all_digits(num) {
        return None;
    }
    Some(BashLine {
        prefix,
        line: num.parse().ok(),
        rest: after[colon + 2..].trim_end(),
    })
}

/// Recognise a shell-level (or command-level) error message by its errno text.
fn classify_shell(msg: &str) -> Option<&'static str> {
    let lower = msg.to_ascii_lowercase();
    let kind = if msg.ends_with("command not found") {
        "CommandNotFound"
    } else if lower.contains("syntax error") {
        "SyntaxError"
    } else if msg.ends_with("unbound variable") {
        "UnboundVariable"
    } else if lower.contains("read-only file system") {
        "ReadOnlyFileSystem"
    } else if lower.contains("permission denied") {
        "PermissionDenied"
    } else if lower.contains("operation not permitted") {
        "OperationNotPermitted"
    } else if lower.contains("no space left on device") {
        "NoSpaceLeft"
    } else if lower.contains("cannot allocate memory") {
        "MemoryError"
    } else if lower.contains("could not resolve host")
        || lower.contains("unable to resolve host")
        || lower.contains("temporary failure in name resolution")
        || lower.contains("name or service not known")
        || lower.contains("network is unreachable")
        || lower.contains("failed to connect to")
        || lower.contains("connection refused")
    {
        "NetworkError"
    } else if lower.contains("no such file or directory") {
        "FileNotFound"
    } else if lower.contains("resource temporarily unavailable") {
        "ResourceLimit"
    } else {
        return None;
    };
    Some(kind)
}

/// bash's report of a child killed by a signal: `  7129 Killed                  sleep 100`.
fn shell_killed(rest: &str) -> Option<String> {
    const DESCRIPTIONS: [&str; 14] = [
        "Killed",
        "Segmentation fault",
        "Aborted",
        "Terminated",
        "Bus error",
        "Floating point exception",
        "Illegal instruction",
        "Hangup",
        "Quit",
        "CPU time limit exceeded",
        "File size limit exceeded",
        "Bad system call",
        "Trace/breakpoint trap",
        "Interrupt",
    ];
    let t = rest.trim_start();
    let pid_end = t.find(|c: char| !c.is_ascii_digit())?;
    if pid_end == 0 {
        return None;
    }
    let after = &t[pid_end..];
    if !after.starts_with(char::is_whitespace) {
        return None;
    }
    let after = after.trim_start();
    let desc = DESCRIPTIONS.iter().find(|d| after.starts_with(*d))?;
    let cmd = after[desc.len()..].trim();
    let cmd = cmd.strip_prefix("(core dumped)").unwrap_or(cmd).trim();
    Some(if cmd.is_empty() {
        (*desc).to_string()
    } else {
        format!("{cmd}: {desc}")
    })
}

fn parse_shell(lines: &[&str]) -> Option<Found> {
    for i in (0..lines.len()).rev() {
        let l = lines[i].trim_end();
        if l.is_empty() {
            continue;
        }
        if let Some(mut b) = parse_bash_line(l) {
            // `main.sh: line 4: syntax error near unexpected token `)'` is followed by
            // `main.sh: line 4: `fi)'` echoing the code.
            let mut tb_start = i;
            if b.rest.starts_with('`')
                && i > 0
                && let Some(prev) = parse_bash_line(lines[i - 1].trim_end())
                && prev.rest.contains("syntax error")
            {
                b = prev;
                tb_start = i - 1;
            }
            let (kind, message) = match shell_killed(b.rest) {
                Some(m) => ("Signal", m),
                None => (
                    classify_shell(b.rest).unwrap_or("ShellError"),
                    b.rest.to_string(),
                ),
            };
            let mut info = ErrorInfo::new(kind, bounded_message(&message));
            info.line = b.line;
            if b.prefix.contains('/') || b.prefix.ends_with(".sh") {
                info.file = Some(b.prefix.to_string());
            }
            if tb_start < i {
                info.traceback = bounded_traceback(&lines[tb_start..=i]);
            }
            return Some(Found { info, anchor: i });
        }
        if let Some(kind) = classify_shell(l) {
            let info = ErrorInfo::new(kind, bounded_message(l.trim()));
            return Some(Found { info, anchor: i });
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Hints
// ---------------------------------------------------------------------------------------

/// Python import names whose pip package is named differently.
const PY_IMPORT_TO_PACKAGE: &[(&str, &str)] = &[
    ("google.protobuf", "protobuf"),
    ("cv2", "opencv-python"),
    ("PIL", "pillow"),
    ("sklearn", "scikit-learn"),
    ("yaml", "pyyaml"),
    ("bs4", "beautifulsoup4"),
    ("dateutil", "python-dateutil"),
    ("skimage", "scikit-image"),
    ("Crypto", "pycryptodome"),
    ("OpenSSL", "pyopenssl"),
    ("docx", "python-docx"),
    ("pptx", "python-pptx"),
    ("jwt", "pyjwt"),
    ("serial", "pyserial"),
    ("dotenv", "python-dotenv"),
    ("fitz", "pymupdf"),
    ("git", "gitpython"),
    ("zmq", "pyzmq"),
    ("MySQLdb", "mysqlclient"),
    ("psycopg2", "psycopg2-binary"),
    ("attr", "attrs"),
    ("magic", "python-magic"),
    ("jose", "python-jose"),
    ("slugify", "python-slugify"),
    ("multipart", "python-multipart"),
    ("Bio", "biopython"),
    ("umap", "umap-learn"),
    ("faiss", "faiss-cpu"),
    ("telegram", "python-telegram-bot"),
    ("mpl_toolkits", "matplotlib"),
    ("pkg_resources", "setuptools"),
];

/// Common Python aliases used without their import.
const PY_ALIASES: &[(&str, &str)] = &[
    ("pd", "import pandas as pd"),
    ("np", "import numpy as np"),
    ("plt", "import matplotlib.pyplot as plt"),
    ("sns", "import seaborn as sns"),
    ("tf", "import tensorflow as tf"),
    ("torch", "import torch"),
    ("os", "import os"),
    ("sys", "import sys"),
    ("json", "import json"),
    ("re", "import re"),
    ("math", "import math"),
    ("time", "import time"),
    ("random", "import random"),
    ("datetime", "import datetime"),
    ("requests", "import requests"),
    ("csv", "import csv"),
];

/// The text between the first pair of `'` after `prefix`.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let (_, rest) = message.split_once(prefix)?;
    let rest = rest.strip_prefix('\'')?;
    let end = rest.find('\'')?;
    Some(&rest[..end])
}

fn py_package_for(module: &str) -> String {
    for (import, package) in PY_IMPORT_TO_PACKAGE {
        if module == *import || module.starts_with(&format!("{import}.")) {
            return (*package).to_string();
        }
    }
    let top = module.split('.').next().unwrap_or(module);
    top.replace('_', "-")
}

fn py_module_hint(message: &str) -> Option<String> {
    let module = quoted_after(message, "No module named ")?;
    if module.is_empty() {
        return None;
    }
    let known = PY_IMPORT_TO_PACKAGE
        .iter()
        .any(|(import, _)| import.contains('.') && module.starts_with(import));
    if module.contains('.') && !known {
        // Python names the top-level package when that is missing, so a dotted name means
        // the package is there but lacks the submodule.
        let top = module.split('.').next().unwrap_or(module);
        return Some(format!(
            "'{top}' is installed but has no module '{module}': check the name, or pin a \
             version of the package that provides it in packages"
        ));
    }
    let package = py_package_for(module);
    let top = module.split('.').next().unwrap_or(module);
    Some(if package == top {
        format!(
            "module '{module}' is not installed in the sandbox: add it to packages \
             (CLI: -p {package})"
        )
    } else {
        format!(
            "module '{module}' is not installed in the sandbox: add '{package}' to packages \
             (CLI: -p {package})"
        )
    })
}

fn npm_module_hint(message: &str) -> Option<String> {
    let spec = quoted_after(message, "Cannot find module ")
        .or_else(|| quoted_after(message, "Cannot find package "))?;
    if spec.is_empty() || spec.starts_with("node:") {
        return None;
    }
    if spec.starts_with('.') || spec.starts_with('/') {
        return Some(format!(
            "'{spec}' is a local file that does not exist in the sandbox: write it into the \
             workspace first"
        ));
    }
    let mut parts = spec.split('/');
    let package = match (parts.next(), parts.next()) {
        (Some(scope), Some(name)) if scope.starts_with('@') => format!("{scope}/{name}"),
        (Some(name), _) => name.to_string(),
        _ => return None,
    };
    Some(if package == spec {
        format!(
            "module '{spec}' is not installed in the sandbox: add it to packages \
             (CLI: -p {package})"
        )
    } else {
        format!(
            "module '{spec}' is not installed in the sandbox: add '{package}' to packages \
             (CLI: -p {package})"
        )
    })
}

/// Whether an error of this type and message is a failed connection or name lookup.
pub(crate) fn looks_like_network_error(kind: &str, message: &str) -> bool {
    let message = head(message, 64 * 1024);
    is_network_error(short_kind(kind), message, &message.to_ascii_lowercase())
}

fn is_network_error(short: &str, message: &str, lower: &str) -> bool {
    const NAMES: [&str; 12] = [
        "gaierror",
        "herror",
        "URLError",
        "ConnectionError",
        "ConnectionRefusedError",
        "ConnectError",
        "ClientConnectorError",
        "NewConnectionError",
        "MaxRetryError",
        "NameResolutionError",
        "NetworkError",
        "ConnectTimeout",
    ];
    const TEXTS: [&str; 9] = [
        "temporary failure in name resolution",
        "name or service not known",
        "network is unreachable",
        "no address associated with hostname",
        "failed to resolve",
        "could not resolve host",
        "unable to resolve host",
        "connection refused",
        "getaddrinfo",
    ];
    const CODES: [&str; 4] = ["ENOTFOUND", "EAI_AGAIN", "ENETUNREACH", "ECONNREFUSED"];
    NAMES.contains(&short)
        || TEXTS.iter().any(|t| lower.contains(t))
        || CODES.iter().any(|c| message.contains(c))
}

/// A host name mentioned in a network error, to suggest for the allowlist.
fn network_host(message: &str) -> Option<&str> {
    let candidates = [
        message.split_once("getaddrinfo ENOTFOUND ").map(|(_, r)| r),
        message.split_once("getaddrinfo EAI_AGAIN ").map(|(_, r)| r),
        message.split_once("host='").map(|(_, r)| r),
        message
            .split_once("Could not resolve host: ")
            .map(|(_, r)| r),
        message
            .split_once("unable to resolve host address ")
            .map(|(_, r)| r.trim_start_matches(['\'', '"', '\u{2018}', '\u{201c}'])),
        message.split_once("Failed to resolve '").map(|(_, r)| r),
    ];
    candidates.into_iter().flatten().find_map(|rest| {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        let host = rest[..end].trim_end_matches('.');
        let is_ip = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        (host.contains('.') && !is_ip && host.len() <= 253).then_some(host)
    })
}

fn memory_hint(ending: &Ending) -> String {
    let limit = if ending.memory_mb > 0 {
        format!("the sandbox memory limit is {} MiB", ending.memory_mb)
    } else {
        "the run hit the sandbox memory limit".to_string()
    };
    format!("{limit}: raise it with --memory MB (CLI) or memory_mb= (API), or use less memory")
}

fn signal_hint(sig: i32, ending: &Ending) -> Option<String> {
    let hint = match sig {
        9 => {
            let limit = if ending.memory_mb > 0 {
                format!(" ({} MiB)", ending.memory_mb)
            } else {
                String::new()
            };
            format!(
                "SIGKILL often means the memory limit{limit} was hit: raise it with --memory MB \
                 (CLI) or memory_mb= (API)"
            )
        }
        11 | 7 => "the process crashed (memory access violation), usually inside a native \
                  extension or from unbounded recursion in native code"
            .to_string(),
        6 => "the process aborted: a fatal error or failed assertion in native code".to_string(),
        8 => "arithmetic error in native code (e.g. integer division by zero)".to_string(),
        24 => "the run used up its CPU time limit".to_string(),
        25 => "a file grew past the sandbox's file size limit".to_string(),
        31 => "a system call was blocked by the sandbox".to_string(),
        _ => return None,
    };
    Some(hint)
}

/// The signal a `Signal` message talks about: `killed by signal 9 (SIGKILL)` or bash's
/// `sleep 100: Killed`.
fn signal_in_message(message: &str) -> Option<i32> {
    if let Some((_, rest)) = message.split_once("signal ") {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if let Ok(sig) = rest[..end].parse() {
            return Some(sig);
        }
    }
    const BY_TEXT: [(&str, i32); 9] = [
        ("Killed", 9),
        ("Segmentation fault", 11),
        ("Bus error", 7),
        ("Aborted", 6),
        ("Floating point exception", 8),
        ("CPU time limit exceeded", 24),
        ("File size limit exceeded", 25),
        ("Bad system call", 31),
        ("Terminated", 15),
    ];
    BY_TEXT
        .iter()
        .find(|(text, _)| message.ends_with(text))
        .map(|(_, sig)| *sig)
}

fn exit_code_hint(message: &str, ending: &Ending) -> Option<String> {
    let code = ending.exit_code.or_else(|| {
        message
            .strip_prefix("exited with code ")
            .and_then(|c| c.trim().parse().ok())
    })?;
    match code {
        127 => Some("exit code 127 usually means a command was not found".to_string()),
        126 => Some("exit code 126 usually means a file is not executable".to_string()),
        129..=192 => {
            let sig = code - 128;
            let name = signal_name(sig).unwrap_or("unknown");
            let more = signal_hint(sig, ending)
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            Some(format!(
                "exit code {code} usually means a process was killed by signal {sig} \
                 ({name}){more}"
            ))
        }
        _ => None,
    }
}

/// A one-line hint for an error, or None when there is nothing useful to add.
pub fn hint_for(kind: &str, message: &str, ending: &Ending) -> Option<String> {
    let short = short_kind(kind);
    let message = head(message, 64 * 1024);
    let lower = message.to_ascii_lowercase();
    match short {
        "Timeout" => {
            let after = if ending.timeout_secs.is_finite() && ending.timeout_secs > 0.0 {
                format!("the run was stopped after {} s", ending.timeout_secs)
            } else {
                "the run hit the time limit".to_string()
            };
            return Some(format!(
                "{after}: raise the limit with --timeout SECONDS (CLI) or timeout= (API), or \
                 make the code faster"
            ));
        }
        "MemoryLimit" | "MemoryError" => return Some(memory_hint(ending)),
        "NonZeroExit" => return exit_code_hint(message, ending),
        "Signal" => return signal_hint(signal_in_message(message)?, ending),
        _ => {}
    }
    if lower.contains("heap out of memory")
        || lower.contains("array buffer allocation failed")
        || lower.contains("cannot allocate memory")
        || message.contains("ENOMEM")
    {
        return Some(memory_hint(ending));
    }
    if (short == "ModuleNotFoundError"
        || (short == "ImportError" && message.starts_with("No module named")))
        && let Some(h) = py_module_hint(message)
    {
        return Some(h);
    }
    if short == "ImportError"
        && message.starts_with("cannot import name")
        && let Some(module) = quoted_after(message, " from ")
    {
        return Some(format!(
            "'{module}' does not provide that name: check the spelling, or pin the package \
             version that has it in packages"
        ));
    }
    if (message.starts_with("Cannot find module '") || message.starts_with("Cannot find package '"))
        && let Some(h) = npm_module_hint(message)
    {
        return Some(h);
    }
    if ending.network_none && is_network_error(short, message, &lower) {
        let (domains, flag) = match network_host(message) {
            Some(host) => (format!("[\"{host}\"]"), host.to_string()),
            None => ("[...]".to_string(), "DOMAIN".to_string()),
        };
        return Some(format!(
            "the sandbox has no network (only its own loopback): to reach a host, use \
             network=\"allowlist\" with allowed_domains={domains} (CLI: --network allowlist \
             --allow-domain {flag})"
        ));
    }
    if lower.contains("read-only file system")
        || message.contains("EROFS")
        || short == "ReadOnlyFileSystem"
    {
        return Some(
            "the sandbox root is read-only: write files under /tmp or /workspace".to_string(),
        );
    }
    if lower.contains("operation not permitted")
        || message.contains("EPERM")
        || short == "OperationNotPermitted"
    {
        return Some(
            "the sandbox runs without privileges and blocks some system calls: this operation \
             is not allowed here"
                .to_string(),
        );
    }
    if lower.contains("permission denied")
        || message.contains("EACCES")
        || matches!(short, "PermissionError" | "PermissionDenied")
    {
        if ending.exit_code == Some(126) {
            return Some(
                "the file is not executable: chmod +x it first, or run it through its \
                 interpreter (e.g. bash script.sh)"
                    .to_string(),
            );
        }
        return Some(
            "the sandbox root is read-only and the code runs as an unprivileged user: write \
             under /tmp or /workspace"
                .to_string(),
        );
    }
    if short == "CommandNotFound" {
        let cmd = message
            .strip_suffix("command not found")
            .map(|m| m.trim_end().trim_end_matches(':').trim())
            .and_then(|m| m.rsplit(": ").next())
            .filter(|c| !c.is_empty())
            .unwrap_or("the command");
        return Some(format!(
            "'{cmd}' is not available in the sandbox: check the spelling, or do this step \
             with a Python or JavaScript package instead"
        ));
    }
    if matches!(short, "FileNotFoundError" | "FileNotFound")
        || lower.contains("no such file or directory")
        || message.contains("ENOENT")
    {
        return Some(
            "the file does not exist inside the sandbox: only the sandbox's own files are \
             visible; write inputs into /workspace first (or mount a host directory with \
             --mount SRC:DST)"
                .to_string(),
        );
    }
    if lower.contains("no space left on device") || message.contains("ENOSPC") {
        return Some(
            "the sandbox's /tmp and /workspace are size-capped: write less data".to_string(),
        );
    }
    if lower.contains("can't start new thread")
        || (lower.contains("resource temporarily unavailable") && lower.contains("fork"))
        || message.contains("EAGAIN")
        || short == "ResourceLimit"
    {
        return Some(
            "the sandbox limits how many processes and threads a run may start: use fewer"
                .to_string(),
        );
    }
    if short == "NameError" {
        let name = quoted_after(message, "name ")?;
        return PY_ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map(|(_, import)| format!("did you forget `{import}`?"));
    }
    if short == "TabError" {
        return Some("the indentation mixes tabs and spaces: indent with spaces only".to_string());
    }
    if short == "ReferenceError" && message.starts_with("require is not defined") {
        return Some("the code runs as an ES module: use import instead of require()".to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    //! Fixtures are real stderr captured from python3 3.11, node 20 and bash 5.2 on the
    //! build machine, with the script paths rewritten to /airlock/main.* and the Python
    //! prefix to /usr/local.

    use super::*;

    fn failed(code: i32) -> Ending {
        Ending {
            exit_code: Some(code),
            timeout_secs: 30.0,
            memory_mb: 512,
            ..Ending::default()
        }
    }

    fn offline(code: i32) -> Ending {
        Ending {
            network_none: true,
            ..failed(code)
        }
    }

    fn py(stderr: &str) -> ErrorInfo {
        diagnose(Language::Python, stderr, &failed(1)).expect("an error")
    }

    fn js(stderr: &str) -> ErrorInfo {
        diagnose(Language::JavaScript, stderr, &failed(1)).expect("an error")
    }

    fn sh(stderr: &str, code: i32) -> ErrorInfo {
        diagnose(Language::Shell, stderr, &failed(code)).expect("an error")
    }

    fn at(info: &ErrorInfo, file: &str, line: u32) {
        assert_eq!(info.file.as_deref(), Some(file), "{info:#?}");
        assert_eq!(info.line, Some(line), "{info:#?}");
    }

    fn hint(info: &ErrorInfo) -> &str {
        info.hint
            .as_deref()
            .unwrap_or_else(|| panic!("no hint: {info:#?}"))
    }

    // ---------------------------------------------------------------- Python

    #[test]
    fn python_traceback_innermost_user_frame() {
        let e = py(fx::PY_ZERODIV);
        assert_eq!(e.kind, "ZeroDivisionError");
        assert_eq!(e.message, "division by zero");
        at(&e, PYTHON_MAIN, 2);
        let tb = e.traceback.as_deref().unwrap();
        assert!(tb.starts_with("Traceback (most recent call last):"));
        assert!(tb.ends_with("ZeroDivisionError: division by zero"));
        assert_eq!(e.hint, None);
    }

    #[test]
    fn python_chained_takes_last_and_keeps_whole_chain() {
        let e = py(fx::PY_CHAIN);
        assert_eq!(e.kind, "ValueError");
        assert_eq!(e.message, "bad value\nsecond line");
        at(&e, PYTHON_MAIN, 5);
        let tb = e.traceback.unwrap();
        assert!(tb.starts_with("Traceback"));
        assert!(tb.contains("KeyError: 'k'"));
        assert!(tb.contains("During handling of the above exception"));

        let e = py(fx::PY_FROM);
        assert_eq!(e.kind, "RuntimeError");
        assert_eq!(e.message, "could not parse config");
        at(&e, PYTHON_MAIN, 5);
        assert!(e.traceback.unwrap().contains("invalid literal for int()"));
    }

    #[test]
    fn python_exception_without_message() {
        let e = py(fx::PY_NOMSG);
        assert_eq!((e.kind.as_str(), e.message.as_str()), ("RuntimeError", ""));
        at(&e, PYTHON_MAIN, 2);
        let e = py(fx::PY_EMPTY_MSG_COLON);
        assert_eq!((e.kind.as_str(), e.message.as_str()), ("ValueError", ""));
    }

    #[test]
    fn python_odd_names_and_messages() {
        let e = py(fx::PY_CUSTOM);
        assert_eq!(e.kind, "MyError");
        assert_eq!(e.message, "custom thing: with colon");
        let e = py(fx::PY_LOCAL_CLS);
        assert_eq!(e.kind, "f.<locals>.LocalErr");
        assert_eq!(e.message, "inner");
        at(&e, PYTHON_MAIN, 4);
        let e = py(fx::PY_NOTES);
        assert_eq!(e.message, "with note\nnote one");
        let e = py(fx::PY_KEYERROR);
        assert_eq!((e.kind.as_str(), e.message.as_str()), ("KeyError", "'b'"));
        let e = py(fx::PY_RECURSION);
        assert_eq!(e.kind, "RecursionError");
        at(&e, PYTHON_MAIN, 2);
    }

    #[test]
    fn python_library_frames_point_back_at_user_code() {
        let e = py(fx::PY_LIB_FRAME);
        assert_eq!(e.kind, "json.decoder.JSONDecodeError");
        assert!(e.message.starts_with("Expecting property name"));
        at(&e, PYTHON_MAIN, 2);
    }

    #[test]
    fn python_output_before_traceback_is_ignored() {
        let e = py(fx::PY_WARN_THEN_ERR);
        assert_eq!(e.kind, "AssertionError");
        assert_eq!(e.message, "numbers differ");
        at(&e, PYTHON_MAIN, 4);
        assert!(!e.traceback.unwrap().contains("UserWarning"));
    }

    #[test]
    fn python_syntax_errors() {
        let e = py(fx::PY_SYNTAX);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("SyntaxError", "invalid syntax")
        );
        at(&e, PYTHON_MAIN, 2);
        let tb = e.traceback.unwrap();
        assert!(tb.starts_with("  File \"/airlock/main.py\", line 2"));
        assert!(tb.contains('^'));

        let e = py(fx::PY_UNTERMINATED);
        assert_eq!(e.kind, "SyntaxError");
        assert_eq!(
            e.message,
            "unterminated string literal (detected at line 2)"
        );
        at(&e, PYTHON_MAIN, 2);

        let e = py(fx::PY_INDENT);
        assert_eq!(e.kind, "IndentationError");
        assert_eq!(e.message, "unexpected indent");
        at(&e, PYTHON_MAIN, 3);

        let e = py(fx::PY_TAB);
        assert_eq!(e.kind, "TabError");
        assert_eq!(
            e.message,
            "inconsistent use of tabs and spaces in indentation"
        );
        at(&e, PYTHON_MAIN, 3);
        assert!(hint(&e).contains("tabs and spaces"));

        let e = py(fx::PY_NULL);
        assert_eq!(e.message, "source code cannot contain null bytes");
        at(&e, PYTHON_MAIN, 1);

        let e = py(fx::PY_UTF);
        assert_eq!(e.kind, "SyntaxError");
        assert!(e.message.starts_with("Non-UTF-8 code"));
        at(&e, PYTHON_MAIN, 1);
    }

    #[test]
    fn python_syntax_error_in_imported_user_module() {
        let e = py(fx::PY_IMP);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("SyntaxError", "invalid syntax")
        );
        at(&e, "/airlock/helper.py", 1);
        assert!(e.traceback.unwrap().starts_with("Traceback"));
    }

    #[test]
    fn python_exception_groups() {
        let e = py(fx::PY_GROUP);
        assert_eq!(e.kind, "ExceptionGroup");
        assert_eq!(e.message, "many (2 sub-exceptions)");
        at(&e, PYTHON_MAIN, 1);
        assert!(e.traceback.unwrap().contains("TypeError: b"));

        let e = py(fx::PY_GROUP3);
        assert_eq!(e.message, "batch (1 sub-exception)");
        at(&e, PYTHON_MAIN, 8);

        let e = py(fx::PY_GROUP2);
        assert_eq!(e.kind, "RuntimeError");
        assert_eq!(e.message, "cleanup failed");
        at(&e, PYTHON_MAIN, 14);
        assert!(
            e.traceback
                .unwrap()
                .starts_with("  + Exception Group Traceback")
        );
    }

    #[test]
    fn python_name_error() {
        let e = py(fx::PY_NAME);
        assert_eq!(e.kind, "NameError");
        assert_eq!(e.message, "name 'undefined_var' is not defined");
        at(&e, PYTHON_MAIN, 1);
        assert_eq!(e.hint, None);
        let h = hint_for("NameError", "name 'np' is not defined", &failed(1));
        assert_eq!(h.as_deref(), Some("did you forget `import numpy as np`?"));
    }

    #[test]
    fn python_module_not_found() {
        let e = py(fx::PY_MOD);
        assert_eq!(e.kind, "ModuleNotFoundError");
        assert_eq!(e.message, "No module named 'pandas'");
        at(&e, PYTHON_MAIN, 1);
        assert_eq!(
            hint(&e),
            "module 'pandas' is not installed in the sandbox: add it to packages (CLI: -p pandas)"
        );
        assert!(
            hint(&py(fx::PY_CV2))
                .ends_with("add 'opencv-python' to packages (CLI: -p opencv-python)")
        );
        assert!(hint(&py(fx::PY_SKLEARN)).contains("-p scikit-learn"));
        for (module, package) in [
            ("PIL", "pillow"),
            ("yaml", "pyyaml"),
            ("bs4", "beautifulsoup4"),
            ("dateutil", "python-dateutil"),
            ("google.protobuf", "protobuf"),
        ] {
            let h = hint_for(
                "ModuleNotFoundError",
                &format!("No module named '{module}'"),
                &failed(1),
            )
            .unwrap();
            assert!(h.contains(&format!("(CLI: -p {package})")), "{h}");
        }
        let h = hint_for(
            "ModuleNotFoundError",
            "No module named 'pandas.foo'",
            &failed(1),
        );
        assert!(h.unwrap().contains("is installed but has no module"));
    }

    #[test]
    fn python_memory_error() {
        let e = py(fx::PY_MEM);
        assert_eq!((e.kind.as_str(), e.message.as_str()), ("MemoryError", ""));
        at(&e, PYTHON_MAIN, 3);
        let h = hint(&e);
        assert!(
            h.contains("512 MiB") && h.contains("--memory") && h.contains("memory_mb"),
            "{h}"
        );
        // The language-level error wins over the supervisor's memory flag.
        let ending = Ending {
            memory_limit: true,
            ..failed(1)
        };
        let e = diagnose(Language::Python, fx::PY_MEM, &ending).unwrap();
        assert_eq!(e.kind, "MemoryError");
    }

    #[test]
    fn python_read_only_and_permissions() {
        let e = py(fx::PY_PERM);
        assert_eq!(e.kind, "PermissionError");
        assert!(hint(&e).contains("read-only") && hint(&e).contains("/tmp or /workspace"));
        let e = py(fx::PY_EROFS);
        assert_eq!(e.kind, "OSError");
        assert_eq!(
            e.message,
            "[Errno 30] Read-only file system: '/tmp/ro/out.txt'"
        );
        assert_eq!(
            hint(&e),
            "the sandbox root is read-only: write files under /tmp or /workspace"
        );
        let e = py(fx::PY_EPERM);
        assert!(hint(&e).contains("without privileges"));
        let e = py(fx::PY_FNF);
        assert_eq!(e.kind, "FileNotFoundError");
        assert!(hint(&e).contains("/workspace"));
    }

    #[test]
    fn python_network_errors_without_network() {
        for (stderr, kind) in [
            (fx::PY_GAIERROR, "socket.gaierror"),
            (fx::PY_GAIERROR_NETNS, "socket.gaierror"),
            (fx::PY_URLLIB, "urllib.error.URLError"),
            (fx::PY_URLLIB_NETNS, "urllib.error.URLError"),
            (fx::PY_REQUESTS_NETNS, "requests.exceptions.ConnectionError"),
            (fx::PY_CONNREFUSED, "ConnectionRefusedError"),
            (fx::PY_UNREACH, "OSError"),
        ] {
            let e = diagnose(Language::Python, stderr, &offline(1)).unwrap();
            assert_eq!(e.kind, kind);
            at(&e, PYTHON_MAIN, 2);
            let h = hint(&e);
            assert!(
                h.contains("no network") && h.contains("--network allowlist"),
                "{h}"
            );
            assert!(h.contains("allowed_domains"), "{h}");
            // With the network on, no hint about it.
            assert_eq!(py(stderr).hint, None, "{kind}");
        }
        let e = diagnose(Language::Python, fx::PY_REQUESTS_NETNS, &offline(1)).unwrap();
        assert!(hint(&e).contains("--allow-domain nonexistent.invalid"));
        assert!(e.traceback.unwrap().contains("NameResolutionError"));
        let e = diagnose(Language::Python, fx::PY_GAIERROR_NETNS, &offline(1)).unwrap();
        assert_eq!(e.message, "[Errno -3] Temporary failure in name resolution");
    }

    #[test]
    fn python_keyboard_interrupt_is_not_special() {
        let e = diagnose(Language::Python, fx::PY_KEYBOARD, &failed(130)).unwrap();
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("KeyboardInterrupt", "")
        );
        at(&e, PYTHON_MAIN, 1);
        assert_eq!(e.hint, None);
    }

    #[test]
    fn python_exit_without_traceback() {
        let e = py(fx::PY_SYSEXIT_MSG);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("NonZeroExit", "exited with code 1")
        );
        let e = diagnose(Language::Python, "", &failed(3)).unwrap();
        assert_eq!(e.message, "exited with code 3");
        assert_eq!(e.hint, None);
    }

    #[test]
    fn python_segfault_keeps_faulthandler_location() {
        let ending = Ending {
            signal: Some(11),
            ..Ending::default()
        };
        let e = diagnose(Language::Python, fx::PY_SEGV, &ending).unwrap();
        assert_eq!(e.kind, "Signal");
        assert_eq!(e.message, "killed by signal 11 (SIGSEGV)");
        at(&e, PYTHON_MAIN, 2);
        assert!(hint(&e).contains("crashed"));
        assert!(
            e.traceback
                .unwrap()
                .starts_with("Fatal Python error: Segmentation fault")
        );
    }

    #[test]
    fn success_is_none() {
        let ok = Ending {
            exit_code: Some(0),
            ..Ending::default()
        };
        assert_eq!(diagnose(Language::Python, fx::PY_ZERODIV, &ok), None);
        assert_eq!(diagnose(Language::JavaScript, "", &ok), None);
        assert_eq!(diagnose(Language::Shell, fx::SH_CAT, &ok), None);
        // Nothing known and nothing parsed.
        assert_eq!(diagnose(Language::Shell, "", &Ending::default()), None);
    }

    // ---------------------------------------------------------------- JavaScript

    #[test]
    fn node_uncaught_errors() {
        let e = js(fx::JS_TYPE);
        assert_eq!(e.kind, "TypeError");
        assert_eq!(
            e.message,
            "Cannot read properties of undefined (reading 'y')"
        );
        at(&e, JAVASCRIPT_MAIN, 2);
        let tb = e.traceback.unwrap();
        assert!(tb.starts_with("/airlock/main.js:2\n"));
        assert!(tb.contains("    at g (/airlock/main.js:5:10)"));
        assert!(!tb.contains("Node.js v20"));

        let e = js(fx::JS_REF);
        assert_eq!(e.kind, "ReferenceError");
        assert_eq!(e.message, "notDefined is not defined");
        at(&e, JAVASCRIPT_MAIN, 2);

        let e = js(fx::JS_SYNTAX);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("SyntaxError", "Unexpected number")
        );
        at(&e, JAVASCRIPT_MAIN, 3);

        let e = js(fx::JS_REJECT);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("Error", "async failure")
        );
        at(&e, JAVASCRIPT_MAIN, 1);

        let e = js(fx::JS_CUSTOM);
        assert_eq!(e.kind, "ValidationError");
        assert_eq!(e.message, "field x is required\nand y too");
        at(&e, JAVASCRIPT_MAIN, 4);

        let e = js(fx::JS_NESTED);
        assert_eq!(e.kind, "SyntaxError");
        assert!(e.message.starts_with("Expected property name"));
        at(&e, JAVASCRIPT_MAIN, 4);

        let e = js(fx::JS_TIMEOUT_LIKE);
        assert_eq!(e.kind, "TypeError");
        at(&e, JAVASCRIPT_MAIN, 1);
    }

    #[test]
    fn node_thrown_values() {
        for (stderr, value) in [
            (fx::JS_THROW_STR, "x"),
            (fx::JS_THROW_NUM, "42"),
            (fx::JS_THROW_NULL, "null"),
            (fx::JS_THROW_OBJ, "{ code: 42, msg: 'bad' }"),
        ] {
            let e = js(stderr);
            assert_eq!((e.kind.as_str(), e.message.as_str()), ("Uncaught", value));
            at(&e, JAVASCRIPT_MAIN, 1);
        }
        let e = js(fx::JS_REJECT_STR);
        assert_eq!(e.kind, "UnhandledPromiseRejection");
        assert_eq!(e.message, "The promise rejected with the reason \"nope\".");
    }

    #[test]
    fn node_module_not_found() {
        let e = js(fx::JS_MODULE);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("Error", "Cannot find module 'lodash'")
        );
        at(&e, JAVASCRIPT_MAIN, 1);
        assert_eq!(
            hint(&e),
            "module 'lodash' is not installed in the sandbox: add it to packages (CLI: -p lodash)"
        );
        let e = js(fx::JS_SCOPED);
        assert!(hint(&e).contains("add '@scope/pkg' to packages (CLI: -p @scope/pkg)"));
        let e = js(fx::JS_ESM);
        assert_eq!(e.kind, "Error");
        assert_eq!(
            e.message,
            "Cannot find package 'lodash' imported from /airlock/main.mjs"
        );
        assert!(hint(&e).contains("-p lodash"));
        let h = hint_for("Error", "Cannot find module './util'", &failed(1)).unwrap();
        assert!(h.contains("local file"));
    }

    #[test]
    fn node_network_errors_without_network() {
        for (stderr, host) in [
            (fx::JS_ENOTFOUND, Some("nonexistent.invalid")),
            (fx::JS_EAI_AGAIN, Some("example.com")),
            (fx::JS_FETCH_NETNS, Some("nonexistent.invalid")),
            (fx::JS_FETCH, Some("nonexistent.invalid")),
            (fx::JS_REFUSED, None),
            (fx::JS_UNREACH, None),
        ] {
            let e = diagnose(Language::JavaScript, stderr, &offline(1)).unwrap();
            let h = hint(&e);
            assert!(h.contains("no network"), "{h}");
            let flag = format!("--allow-domain {}", host.unwrap_or("DOMAIN"));
            assert!(h.contains(&flag), "{h}");
            assert_eq!(js(stderr).hint, None);
        }
        let e = js(fx::JS_FETCH_NETNS);
        assert_eq!(e.kind, "TypeError");
        assert_eq!(
            e.message,
            "fetch failed (cause: Error: getaddrinfo EAI_AGAIN nonexistent.invalid)"
        );
        at(&e, JAVASCRIPT_MAIN, 2);
        let e = js(fx::JS_ENOTFOUND);
        assert_eq!(e.message, "getaddrinfo ENOTFOUND nonexistent.invalid");
        // No user frame at all: the innermost frame.
        at(&e, "node:events", 502);
    }

    #[test]
    fn node_heap_out_of_memory() {
        let ending = Ending {
            signal: Some(6),
            memory_mb: 256,
            ..Ending::default()
        };
        let e = diagnose(Language::JavaScript, fx::JS_OOM, &ending).unwrap();
        assert_eq!(e.kind, "MemoryLimit");
        assert_eq!(
            e.message,
            "Reached heap limit Allocation failed - JavaScript heap out of memory"
        );
        assert!(hint(&e).contains("256 MiB"));
        assert!(e.traceback.unwrap().starts_with("<--- Last few GCs --->"));
        // Same when the supervisor saw the cgroup limit.
        let ending = Ending {
            memory_limit: true,
            ..ending
        };
        assert_eq!(
            diagnose(Language::JavaScript, fx::JS_OOM, &ending)
                .unwrap()
                .kind,
            "MemoryLimit"
        );
    }

    #[test]
    fn node_filesystem_errors() {
        let e = js(fx::JS_EROFS2);
        assert_eq!(
            e.message,
            "EROFS: read-only file system, open '/tmp/ro/out.txt'"
        );
        at(&e, JAVASCRIPT_MAIN, 2);
        assert!(hint(&e).starts_with("the sandbox root is read-only"));
        assert!(hint(&js(fx::JS_EACCES)).contains("unprivileged"));
        assert!(hint(&js(fx::JS_EPERM)).contains("without privileges"));
        assert!(hint(&js(fx::JS_FNF)).contains("does not exist"));
    }

    #[test]
    fn node_plain_exit() {
        let e = diagnose(Language::JavaScript, "", &failed(4)).unwrap();
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("NonZeroExit", "exited with code 4")
        );
    }

    // ---------------------------------------------------------------- Shell

    #[test]
    fn shell_command_not_found() {
        let e = sh(fx::SH_CNF, 127);
        assert_eq!(e.kind, "CommandNotFound");
        assert_eq!(e.message, "foo: command not found");
        at(&e, SHELL_MAIN, 3);
        assert!(hint(&e).starts_with("'foo' is not available in the sandbox"));
    }

    #[test]
    fn shell_filesystem_errors() {
        let e = sh(fx::SH_PERM, 1);
        assert_eq!(e.kind, "PermissionDenied");
        at(&e, SHELL_MAIN, 1);
        assert!(hint(&e).contains("read-only"));
        let e = sh(fx::SH_EROFS, 1);
        assert_eq!(e.kind, "ReadOnlyFileSystem");
        assert_eq!(e.message, "/tmp/ro/out.txt: Read-only file system");
        at(&e, SHELL_MAIN, 1);
        assert!(hint(&e).contains("/tmp or /workspace"));
        let e = sh(fx::SH_EROFS_TOUCH, 1);
        assert_eq!(e.kind, "ReadOnlyFileSystem");
        assert_eq!(
            e.message,
            "touch: cannot touch '/tmp/ro/out.txt': Read-only file system"
        );
        assert_eq!((e.file, e.line), (None, None));
        let e = sh(fx::SH_CD, 1);
        assert_eq!(e.kind, "FileNotFound");
        assert_eq!(e.message, "cd: /nonexistent/dir: No such file or directory");
        at(&e, SHELL_MAIN, 2);
        let e = sh(fx::SH_CAT, 1);
        assert_eq!(e.kind, "FileNotFound");
        assert!(hint(&e).contains("/workspace"));
        let e = sh(fx::SH_REDIRECT, 1);
        assert_eq!(e.kind, "FileNotFound");
        let e = sh(fx::SH_BADCMD_PATH, 127);
        assert_eq!(e.kind, "FileNotFound");
        let e = sh(fx::SH_NOEXEC, 126);
        assert_eq!(e.kind, "PermissionDenied");
        at(&e, SHELL_MAIN, 3);
        assert!(hint(&e).contains("chmod +x"));
    }

    #[test]
    fn shell_syntax_errors() {
        let e = sh(fx::SH_SYNTAX, 2);
        assert_eq!(e.kind, "SyntaxError");
        assert_eq!(e.message, "syntax error near unexpected token `)'");
        at(&e, SHELL_MAIN, 4);
        assert!(e.traceback.unwrap().ends_with("line 4: `fi)'"));
        let e = sh(fx::SH_EOF, 2);
        assert_eq!(e.message, "syntax error: unexpected end of file");
        at(&e, SHELL_MAIN, 3);
        let e = sh(fx::SH_UNBOUND, 1);
        assert_eq!(e.kind, "UnboundVariable");
        at(&e, SHELL_MAIN, 2);
    }

    #[test]
    fn shell_network_errors_without_network() {
        let e = diagnose(Language::Shell, fx::SH_CURL, &offline(6)).unwrap();
        assert_eq!(e.kind, "NetworkError");
        assert_eq!(e.message, "curl: (6) Could not resolve host: example.com");
        assert!(hint(&e).contains("--allow-domain example.com"));
        let e = diagnose(Language::Shell, fx::SH_WGET, &offline(4)).unwrap();
        assert_eq!(e.kind, "NetworkError");
        assert!(hint(&e).contains("--allow-domain example.com"), "{e:#?}");
    }

    #[test]
    fn shell_killed_child_and_bare_exit() {
        let e = sh(fx::SH_KILLED, 137);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("Signal", "sleep 100: Killed")
        );
        at(&e, SHELL_MAIN, 3);
        assert!(hint(&e).contains("memory limit"));
        let e = sh(fx::SH_EXIT, 2);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("NonZeroExit", "exited with code 2")
        );
        let e = sh("", 137);
        assert!(hint(&e).contains("signal 9 (SIGKILL)"));
    }

    #[test]
    fn shell_running_python_reports_the_traceback() {
        let e = sh(fx::SH_PY, 1);
        assert_eq!(e.kind, "json.decoder.JSONDecodeError");
        at(&e, "<string>", 1);
        // A later shell error wins over an earlier traceback.
        let later = format!(
            "{}/airlock/main.sh: line 3: foo: command not found\n",
            fx::SH_PY
        );
        let e = sh(&later, 127);
        assert_eq!(e.kind, "CommandNotFound");
        at(&e, SHELL_MAIN, 3);
    }

    // ---------------------------------------------------------------- supervisor facts

    #[test]
    fn timeout() {
        let ending = Ending {
            timed_out: true,
            signal: Some(9),
            timeout_secs: 30.0,
            ..Ending::default()
        };
        let e = diagnose(Language::Python, fx::PY_ZERODIV, &ending).unwrap();
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("Timeout", "timed out after 30 s")
        );
        let h = hint(&e);
        assert!(h.contains("--timeout") && h.contains("timeout="), "{h}");
        let ending = Ending {
            timeout_secs: 0.5,
            ..ending
        };
        let e = diagnose(Language::Shell, "", &ending).unwrap();
        assert_eq!(e.message, "timed out after 0.5 s");
    }

    #[test]
    fn memory_limit() {
        let ending = Ending {
            memory_limit: true,
            signal: Some(9),
            memory_mb: 512,
            ..Ending::default()
        };
        let e = diagnose(Language::Python, "", &ending).unwrap();
        assert_eq!(e.kind, "MemoryLimit");
        assert_eq!(e.message, "exceeded the memory limit of 512 MiB");
        let h = hint(&e);
        assert!(h.contains("--memory") && h.contains("memory_mb"), "{h}");
        // A non-memory traceback does not hide the limit.
        let e = diagnose(Language::Python, fx::PY_ZERODIV, &ending).unwrap();
        assert_eq!(e.kind, "MemoryLimit");
    }

    #[test]
    fn signals() {
        let ending = Ending {
            signal: Some(9),
            memory_mb: 512,
            ..Ending::default()
        };
        let e = diagnose(Language::Shell, "", &ending).unwrap();
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("Signal", "killed by signal 9 (SIGKILL)")
        );
        assert!(hint(&e).contains("512 MiB"));
        let ending = Ending {
            signal: Some(11),
            ..Ending::default()
        };
        let e = diagnose(Language::JavaScript, "", &ending).unwrap();
        assert_eq!(e.message, "killed by signal 11 (SIGSEGV)");
        let ending = Ending {
            signal: Some(77),
            ..Ending::default()
        };
        assert_eq!(
            diagnose(Language::Python, "", &ending).unwrap().message,
            "killed by signal 77"
        );
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(-3), None);
        assert_eq!(signal_name(31), Some("SIGSYS"));
    }

    #[test]
    fn an_init_that_died_is_the_sandbox_killed_not_the_programs_signal() {
        let died = Ending {
            signal: Some(9),
            init_died: true,
            memory_mb: 512,
            ..Ending::default()
        };
        // Whatever the program printed before, the init's end is the news.
        let e = diagnose(
            Language::Python,
            "Traceback (most recent call last):\n",
            &died,
        )
        .unwrap();
        assert_eq!(e.kind, "SandboxKilled");
        assert_eq!(
            e.message,
            "the sandbox's init (pid 1) was killed by signal 9 (SIGKILL) before the program \
             ended; how the program itself ended is unknown"
        );
        assert!(!hint(&e).contains("memory limit"), "{e:?}");
        // The memory limit still comes first: the OOM killer is then the reason.
        let oom = Ending {
            memory_limit: true,
            ..died
        };
        assert_eq!(
            diagnose(Language::Python, "", &oom).unwrap().kind,
            "MemoryLimit"
        );
        let exited = Ending {
            exit_code: Some(1),
            init_died: true,
            ..Ending::default()
        };
        assert!(
            diagnose(Language::Shell, "", &exited)
                .unwrap()
                .message
                .starts_with("the sandbox's init (pid 1) exited with code 1 before")
        );
    }

    #[test]
    fn serializes_design_field_names() {
        let e = py(fx::PY_ZERODIV);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "ZeroDivisionError");
        assert_eq!(v["line"], 2);
        assert_eq!(v["file"], PYTHON_MAIN);
        assert!(v["hint"].is_null());
        let back: ErrorInfo = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    // ---------------------------------------------------------------- robustness

    const ALL: &[&str] = &[
        fx::PY_ZERODIV,
        fx::PY_CHAIN,
        fx::PY_GROUP2,
        fx::PY_SYNTAX,
        fx::PY_UTF,
        fx::PY_SEGV,
        fx::PY_REQUESTS_NETNS,
        fx::JS_TYPE,
        fx::JS_OOM,
        fx::JS_FETCH_NETNS,
        fx::JS_THROW_OBJ,
        fx::JS_MODULE,
        fx::SH_SYNTAX,
        fx::SH_WGET,
        fx::SH_KILLED,
        fx::SH_PY,
    ];

    const LANGS: [Language; 3] = [Language::Python, Language::JavaScript, Language::Shell];

    fn endings() -> [Ending; 4] {
        [
            failed(1),
            offline(127),
            Ending {
                signal: Some(6),
                ..Ending::default()
            },
            Ending {
                memory_limit: true,
                ..Ending::default()
            },
        ]
    }

    /// xorshift64*: deterministic pseudo-random numbers without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn every_truncation_of_real_output_is_safe() {
        for text in ALL {
            for (cut, _) in text.char_indices() {
                for lang in LANGS {
                    let _ = diagnose(lang, &text[..cut], &failed(1));
                    let _ = diagnose(lang, &text[cut..], &offline(1));
                }
            }
        }
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let alphabet: &[&[u8]] = &[
            b"Traceback (most recent call last):\n",
            b"  + Exception Group Traceback (most recent call last):\n",
            b"  | ",
            b"    | ",
            b"  File \"/airlock/main.py\", line ",
            b"\", line ",
            b"SyntaxError",
            b"Fatal Python error: ",
            b"During handling of the above exception, another exception occurred:\n",
            b"/airlock/main.js:",
            b"    at ",
            b"(",
            b")",
            b":",
            b": ",
            b"^\n",
            b"Node.js v20\n",
            b"FATAL ERROR:",
            b"[cause]: ",
            b" [",
            b"]",
            b"/airlock/main.sh: line ",
            b": command not found",
            b"`",
            b"'",
            b"\n",
            b"\r\n",
            b" ",
            b"99999999999999999999",
            b"7",
            b"\xff\xfe",
            b"\xe2\x80\x98",
            b"\x1b[31m",
            b"\x1b",
            b"\xc3",
            b"No module named '",
            b"Cannot find module '@",
            b"getaddrinfo ENOTFOUND ",
            b"host='",
            b"signal ",
        ];
        for round in 0..3000 {
            let mut bytes = Vec::new();
            let parts = (rng.next() % 60) as usize;
            for _ in 0..parts {
                if rng.next().is_multiple_of(4) {
                    bytes.push((rng.next() & 0xff) as u8);
                } else {
                    bytes.extend_from_slice(alphabet[(rng.next() as usize) % alphabet.len()]);
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            for lang in LANGS {
                for ending in endings() {
                    if let Some(e) = diagnose(lang, &text, &ending) {
                        assert!(!e.kind.is_empty(), "round {round}");
                        assert!(e.traceback.is_none_or(|t| t.len() <= TRACEBACK_LIMIT));
                    }
                }
            }
            for kind in [
                "Signal",
                "NonZeroExit",
                "ModuleNotFoundError",
                "Error",
                "NameError",
            ] {
                let _ = hint_for(kind, &text, &offline(1));
            }
        }
        // Pure random bytes.
        for _ in 0..500 {
            let len = (rng.next() % 4096) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
            let text = String::from_utf8_lossy(&bytes);
            for lang in LANGS {
                let _ = diagnose(lang, &text, &failed(1));
            }
        }
    }

    #[test]
    fn huge_stderr_is_bounded() {
        // 4 MiB of noise, then a traceback whose frames alone exceed the traceback limit.
        let mut stderr = "noise line that goes on and on\n".repeat(4 * 1024 * 1024 / 31);
        stderr.push_str(PY_HEADER);
        stderr.push('\n');
        for i in 0..3000 {
            stderr.push_str(&format!(
                "  File \"/airlock/main.py\", line {i}, in f{i}\n    return f{}(x)\n",
                i + 1
            ));
        }
        stderr.push_str("ValueError: deep\n");
        let e = py(&stderr);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("ValueError", "deep")
        );
        at(&e, PYTHON_MAIN, 2999);
        let tb = e.traceback.unwrap();
        assert!(tb.len() <= TRACEBACK_LIMIT);
        assert!(tb.ends_with("ValueError: deep"));

        // A huge single-line message is cut, a huge multi-byte one at a char boundary.
        let big = format!(
            "{PY_HEADER}\n  File \"/airlock/main.py\", line 1, in <module>\nValueError: {}\n",
            "é".repeat(100_000)
        );
        let e = py(&big);
        assert!(e.message.len() <= MESSAGE_LIMIT);
        assert!(e.message.starts_with("éé"));

        // Nothing but noise: a plain exit.
        let noise = "x".repeat(3 * 1024 * 1024);
        assert_eq!(sh(&noise, 5).kind, "NonZeroExit");
    }

    #[test]
    fn ansi_colours_are_ignored() {
        let coloured = concat!(
            "\u{1b}[35mTraceback (most recent call last):\u{1b}[0m\n",
            "  File \"/airlock/main.py\", line 3, in <module>\n",
            "\u{1b}[1;35mValueError\u{1b}[0m: \u{1b}[35mboom\u{1b}[0m\n",
        );
        let e = py(coloured);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("ValueError", "boom")
        );
        at(&e, PYTHON_MAIN, 3);
    }

    mod fx {
        pub const JS_CUSTOM: &str = r##"/airlock/main.js:4
throw new ValidationError("field x is required\nand y too");
^

ValidationError: field x is required
and y too
    at Object.<anonymous> (/airlock/main.js:4:7)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12)
    at node:internal/main/run_main_module:28:49

Node.js v20.20.2
"##;
        pub const JS_EACCES: &str = r##"node:fs:2380
    return binding.writeFileUtf8(
                   ^

Error: EACCES: permission denied, open '/etc/airlock_test'
    at Object.writeFileSync (node:fs:2380:20)
    at Object.<anonymous> (/airlock/main.js:2:4)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12)
    at node:internal/main/run_main_module:28:49 {
  errno: -13,
  code: 'EACCES',
  syscall: 'open',
  path: '/etc/airlock_test'
}

Node.js v20.20.2
"##;
        pub const JS_EAI_AGAIN: &str = r##"node:events:502
      throw er; // Unhandled 'error' event
      ^

Error: getaddrinfo EAI_AGAIN example.com
    at GetAddrInfoReqWrap.onlookupall [as oncomplete] (node:dns:122:26)
Emitted 'error' event on ClientRequest instance at:
    at emitErrorEvent (node:_http_client:101:11)
    at Socket.socketErrorListener (node:_http_client:504:5)
    at Socket.emit (node:events:524:28)
    at emitErrorNT (node:internal/streams/destroy:169:8)
    at emitErrorCloseNT (node:internal/streams/destroy:128:3)
    at process.processTicksAndRejections (node:internal/process/task_queues:82:21) {
  errno: -3001,
  code: 'EAI_AGAIN',
  syscall: 'getaddrinfo',
  hostname: 'example.com'
}

Node.js v20.20.2
"##;
        pub const JS_ENOTFOUND: &str = r##"node:events:502
      throw er; // Unhandled 'error' event
      ^

Error: getaddrinfo ENOTFOUND nonexistent.invalid
    at GetAddrInfoReqWrap.onlookupall [as oncomplete] (node:dns:122:26)
Emitted 'error' event on ClientRequest instance at:
    at emitErrorEvent (node:_http_client:101:11)
    at Socket.socketErrorListener (node:_http_client:504:5)
    at Socket.emit (node:events:524:28)
    at emitErrorNT (node:internal/streams/destroy:169:8)
    at emitErrorCloseNT (node:internal/streams/destroy:128:3)
    at process.processTicksAndRejections (node:internal/process/task_queues:82:21) {
  errno: -3008,
  code: 'ENOTFOUND',
  syscall: 'getaddrinfo',
  hostname: 'nonexistent.invalid'
}

Node.js v20.20.2
"##;
        pub const JS_EPERM: &str = r##"node:internal/process/per_thread:225
      throw new ErrnoException(err, 'kill');
      ^

Error: kill EPERM
    at process.kill (node:internal/process/per_thread:225:13)
    at Object.<anonymous> (/airlock/main.js:1:9)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12)
    at node:internal/main/run_main_module:28:49 {
  errno: -1,
  code: 'EPERM',
  syscall: 'kill'
}

Node.js v20.20.2
"##;
        pub const JS_EROFS2: &str = r##"node:fs:2380
    return binding.writeFileUtf8(
                   ^

Error: EROFS: read-only file system, open '/tmp/ro/out.txt'
    at Object.writeFileSync (node:fs:2380:20)
    at Object.<anonymous> (/airlock/main.js:2:4)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12)
    at node:internal/main/run_main_module:28:49 {
  errno: -30,
  code: 'EROFS',
  syscall: 'open',
  path: '/tmp/ro/out.txt'
}

Node.js v20.20.2
"##;
        pub const JS_ESM: &str = r##"node:internal/modules/esm/resolve:873
  throw new ERR_MODULE_NOT_FOUND(packageName, fileURLToPath(base), null);
        ^

Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'lodash' imported from /airlock/main.mjs
    at packageResolve (node:internal/modules/esm/resolve:873:9)
    at moduleResolve (node:internal/modules/esm/resolve:946:18)
    at defaultResolve (node:internal/modules/esm/resolve:1188:11)
    at ModuleLoader.defaultResolve (node:internal/modules/esm/loader:708:12)
    at #cachedDefaultResolve (node:internal/modules/esm/loader:657:25)
    at ModuleLoader.resolve (node:internal/modules/esm/loader:640:38)
    at ModuleLoader.getModuleJobForImport (node:internal/modules/esm/loader:264:38)
    at ModuleJob._link (node:internal/modules/esm/module_job:168:49) {
  code: 'ERR_MODULE_NOT_FOUND'
}

Node.js v20.20.2
"##;
        pub const JS_FETCH: &str = r##"node:internal/deps/undici/undici:14976
      Error.captureStackTrace(err);
            ^

TypeError: fetch failed
    at node:internal/deps/undici/undici:14976:13
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
    at async main (/airlock/main.js:2:13) {
  [cause]: Error: getaddrinfo ENOTFOUND nonexistent.invalid
      at GetAddrInfoReqWrap.onlookupall [as oncomplete] (node:dns:122:26) {
    errno: -3008,
    code: 'ENOTFOUND',
    syscall: 'getaddrinfo',
    hostname: 'nonexistent.invalid'
  }
}

Node.js v20.20.2
"##;
        pub const JS_FETCH_NETNS: &str = r##"node:internal/deps/undici/undici:14976
      Error.captureStackTrace(err);
            ^

TypeError: fetch failed
    at node:internal/deps/undici/undici:14976:13
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
    at async main (/airlock/main.js:2:13) {
  [cause]: Error: getaddrinfo EAI_AGAIN nonexistent.invalid
      at GetAddrInfoReqWrap.onlookupall [as oncomplete] (node:dns:122:26) {
    errno: -3001,
    code: 'EAI_AGAIN',
    syscall: 'getaddrinfo',
    hostname: 'nonexistent.invalid'
  }
}

Node.js v20.20.2
"##;
        pub const JS_FNF: &str = r##"node:fs:448
    return binding.readFileUtf8(path, stringToFlags(options.flag));
                   ^

Error: ENOENT: no such file or directory, open 'data.csv'
    at Object.readFileSync (node:fs:448:20)
    at Object.<anonymous> (/airlock/main.js:2:17)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12)
    at node:internal/main/run_main_module:28:49 {
  errno: -2,
  code: 'ENOENT',
  syscall: 'open',
  path: 'data.csv'
}

Node.js v20.20.2
"##;
        pub const JS_MODULE: &str = r##"node:internal/modules/cjs/loader:1210
  throw err;
  ^

Error: Cannot find module 'lodash'
Require stack:
- /airlock/main.js
    at Module._resolveFilename (node:internal/modules/cjs/loader:1207:15)
    at Module._load (node:internal/modules/cjs/loader:1038:27)
    at Module.require (node:internal/modules/cjs/loader:1289:19)
    at require (node:internal/modules/helpers:182:18)
    at Object.<anonymous> (/airlock/main.js:1:11)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12) {
  code: 'MODULE_NOT_FOUND',
  requireStack: [ '/airlock/main.js' ]
}

Node.js v20.20.2
"##;
        pub const JS_NESTED: &str = r##"<anonymous_script>:1
{bad
 ^

SyntaxError: Expected property name or '}' in JSON at position 1
    at JSON.parse (<anonymous>)
    at /airlock/main.js:4:20
    at Object.run (/airlock/main.js:2:20)
    at Object.<anonymous> (/airlock/main.js:4:5)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12)
    at node:internal/main/run_main_module:28:49

Node.js v20.20.2
"##;
        pub const JS_OOM: &str = r##"
<--- Last few GCs --->

[5902:0x17856ce0]       84 ms: Mark-Compact 31.5 (48.5) -> 31.5 (64.5) MB, 7.44 / 0.00 ms  (average mu = 0.598, current mu = 0.539) allocation failure; scavenge might not succeed


<--- JS stacktrace --->

FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory
----- Native stack trace -----

 1: 0xb78db3 node::OOMErrorHandler(char const*, v8::OOMDetails const&) [node]
 2: 0xee8300 v8::Utils::ReportOOMFailure(v8::internal::Isolate*, char const*, v8::OOMDetails const&) [node]
 3: 0xee85e7 v8::internal::V8::FatalProcessOutOfMemory(v8::internal::Isolate*, char const*, v8::OOMDetails const&) [node]
 4: 0x10fb205  [node]
 5: 0x1113088 v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::internal::GarbageCollectionReason, v8::GCCallbackFlags) [node]
 6: 0x10e91f1 v8::internal::HeapAllocator::AllocateRawWithLightRetrySlowPath(int, v8::internal::AllocationType, v8::internal::AllocationOrigin, v8::internal::AllocationAlignment) [node]
 7: 0x10ea385 v8::internal::HeapAllocator::AllocateRawWithRetryOrFailSlowPath(int, v8::internal::AllocationType, v8::internal::AllocationOrigin, v8::internal::AllocationAlignment) [node]
 8: 0x10c69a6 v8::internal::Factory::AllocateRaw(int, v8::internal::AllocationType, v8::internal::AllocationAlignment) [node]
 9: 0x10b7e4a v8::internal::FactoryBase<v8::internal::Factory>::AllocateRawArray(int, v8::internal::AllocationType, v8::internal::AllocationAlignment) [node]
10: 0x10b7fb4 v8::internal::FactoryBase<v8::internal::Factory>::NewFixedArrayWithFiller(v8::internal::Handle<v8::internal::Map>, int, v8::internal::Handle<v8::internal::Oddball>, v8::internal::AllocationType) [node]
11: 0x1297c5f  [node]
12: 0x12a52a3  [node]
13: 0x12c0c2b  [node]
14: 0x12cbb55 v8::internal::ArrayConstructInitializeElements(v8::internal::Handle<v8::internal::JSArray>, v8::internal::Arguments<(v8::internal::ArgumentsType)1>*) [node]
15: 0x1512628 v8::internal::Runtime_NewArray(int, unsigned long*, v8::internal::Isolate*) [node]
16: 0x195e476  [node]
"##;
        pub const JS_REF: &str = r##"/airlock/main.js:2
console.log(notDefined + a);
            ^

ReferenceError: notDefined is not defined
    at Object.<anonymous> (/airlock/main.js:2:13)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12)
    at node:internal/main/run_main_module:28:49

Node.js v20.20.2
"##;
        pub const JS_REFUSED: &str = r##"node:events:502
      throw er; // Unhandled 'error' event
      ^

Error: connect ECONNREFUSED 127.0.0.1:1
    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1611:16)
Emitted 'error' event on Socket instance at:
    at emitErrorNT (node:internal/streams/destroy:169:8)
    at emitErrorCloseNT (node:internal/streams/destroy:128:3)
    at process.processTicksAndRejections (node:internal/process/task_queues:82:21) {
  errno: -111,
  code: 'ECONNREFUSED',
  syscall: 'connect',
  address: '127.0.0.1',
  port: 1
}

Node.js v20.20.2
"##;
        pub const JS_REJECT: &str = r##"/airlock/main.js:1
async function main() { throw new Error("async failure"); }
                              ^

Error: async failure
    at main (/airlock/main.js:1:31)
    at Object.<anonymous> (/airlock/main.js:2:1)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12)
    at node:internal/main/run_main_module:28:49

Node.js v20.20.2
"##;
        pub const JS_REJECT_STR: &str = r##"node:internal/process/promises:389
      new UnhandledPromiseRejection(reason);
      ^

UnhandledPromiseRejection: This error originated either by throwing inside of an async function without a catch block, or by rejecting a promise which was not handled with .catch(). The promise rejected with the reason "nope".
    at throwUnhandledRejectionsMode (node:internal/process/promises:389:7)
    at processPromiseRejections (node:internal/process/promises:470:17)
    at process.processTicksAndRejections (node:internal/process/task_queues:96:32) {
  code: 'ERR_UNHANDLED_REJECTION'
}

Node.js v20.20.2
"##;
        pub const JS_SCOPED: &str = r##"node:internal/modules/cjs/loader:1210
  throw err;
  ^

Error: Cannot find module '@scope/pkg/sub'
Require stack:
- /airlock/main.js
    at Module._resolveFilename (node:internal/modules/cjs/loader:1207:15)
    at Module._load (node:internal/modules/cjs/loader:1038:27)
    at Module.require (node:internal/modules/cjs/loader:1289:19)
    at require (node:internal/modules/helpers:182:18)
    at Object.<anonymous> (/airlock/main.js:1:11)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12) {
  code: 'MODULE_NOT_FOUND',
  requireStack: [ '/airlock/main.js' ]
}

Node.js v20.20.2
"##;
        pub const JS_SYNTAX: &str = r##"/airlock/main.js:3
  return 2;
         ^

SyntaxError: Unexpected number
    at wrapSafe (node:internal/modules/cjs/loader:1464:18)
    at Module._compile (node:internal/modules/cjs/loader:1495:20)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12)
    at node:internal/main/run_main_module:28:49

Node.js v20.20.2
"##;
        pub const JS_THROW_NULL: &str = r##"
/airlock/main.js:1
throw null;
^
null
(Use `node --trace-uncaught ...` to show where the exception was thrown)

Node.js v20.20.2
"##;
        pub const JS_THROW_NUM: &str = r##"
/airlock/main.js:1
throw 42;
^
42
(Use `node --trace-uncaught ...` to show where the exception was thrown)

Node.js v20.20.2
"##;
        pub const JS_THROW_OBJ: &str = r##"
/airlock/main.js:1
throw {code: 42, msg: "bad"};
^
{ code: 42, msg: 'bad' }

Node.js v20.20.2
"##;
        pub const JS_THROW_STR: &str = r##"
/airlock/main.js:1
throw "x";
^
x
(Use `node --trace-uncaught ...` to show where the exception was thrown)

Node.js v20.20.2
"##;
        pub const JS_TIMEOUT_LIKE: &str = r##"/airlock/main.js:1
setTimeout(() => { null.foo; }, 10);
                        ^

TypeError: Cannot read properties of null (reading 'foo')
    at Timeout._onTimeout (/airlock/main.js:1:25)
    at listOnTimeout (node:internal/timers:581:17)
    at process.processTimers (node:internal/timers:519:7)

Node.js v20.20.2
"##;
        pub const JS_TYPE: &str = r##"/airlock/main.js:2
  return o.x.y;
             ^

TypeError: Cannot read properties of undefined (reading 'y')
    at f (/airlock/main.js:2:14)
    at g (/airlock/main.js:5:10)
    at Object.<anonymous> (/airlock/main.js:7:1)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)
    at Module.load (node:internal/modules/cjs/loader:1266:32)
    at Module._load (node:internal/modules/cjs/loader:1091:12)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12)
    at node:internal/main/run_main_module:28:49

Node.js v20.20.2
"##;
        pub const JS_UNREACH: &str = r##"node:events:502
      throw er; // Unhandled 'error' event
      ^

Error: connect ENETUNREACH 93.184.216.34:80 - Local (0.0.0.0:0)
    at internalConnect (node:net:1098:16)
    at defaultTriggerAsyncIdScope (node:internal/async_hooks:464:18)
    at node:net:1328:9
    at process.processTicksAndRejections (node:internal/process/task_queues:77:11)
Emitted 'error' event on Socket instance at:
    at emitErrorNT (node:internal/streams/destroy:169:8)
    at emitErrorCloseNT (node:internal/streams/destroy:128:3)
    at process.processTicksAndRejections (node:internal/process/task_queues:82:21) {
  errno: -101,
  code: 'ENETUNREACH',
  syscall: 'connect',
  address: '93.184.216.34',
  port: 80
}

Node.js v20.20.2
"##;
        pub const PY_CHAIN: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 3, in <module>
    d["k"]
    ~^^^^^
KeyError: 'k'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/airlock/main.py", line 5, in <module>
    raise ValueError("bad value\nsecond line")
ValueError: bad value
second line
"##;
        pub const PY_CONNREFUSED: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 2, in <module>
    s = socket.create_connection(("127.0.0.1", 1))
        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/socket.py", line 851, in create_connection
    raise exceptions[0]
  File "/usr/local/lib/python3.11/socket.py", line 836, in create_connection
    sock.connect(sa)
ConnectionRefusedError: [Errno 111] Connection refused
"##;
        pub const PY_CUSTOM: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 3, in <module>
    raise MyError("custom thing: with colon")
MyError: custom thing: with colon
"##;
        pub const PY_CV2: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 1, in <module>
    import cv2
ModuleNotFoundError: No module named 'cv2'
"##;
        pub const PY_EMPTY_MSG_COLON: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 1, in <module>
    raise ValueError("")
ValueError
"##;
        pub const PY_EPERM: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 2, in <module>
    os.kill(1, 15)
PermissionError: [Errno 1] Operation not permitted
"##;
        pub const PY_EROFS: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 1, in <module>
    with open("/tmp/ro/out.txt", "w") as f:
         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^
OSError: [Errno 30] Read-only file system: '/tmp/ro/out.txt'
"##;
        pub const PY_FNF: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 1, in <module>
    with open("data.csv") as f:
         ^^^^^^^^^^^^^^^^
FileNotFoundError: [Errno 2] No such file or directory: 'data.csv'
"##;
        pub const PY_FROM: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 3, in parse
    return int(s)
           ^^^^^^
ValueError: invalid literal for int() with base 10: 'abc'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/airlock/main.py", line 7, in <module>
    parse("abc")
  File "/airlock/main.py", line 5, in parse
    raise RuntimeError("could not parse config") from e
RuntimeError: could not parse config
"##;
        pub const PY_GAIERROR: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 2, in <module>
    socket.getaddrinfo("nonexistent.invalid", 80)
  File "/usr/local/lib/python3.11/socket.py", line 962, in getaddrinfo
    for res in _socket.getaddrinfo(host, port, family, type, proto, flags):
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
socket.gaierror: [Errno -2] Name or service not known
"##;
        pub const PY_GAIERROR_NETNS: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 2, in <module>
    socket.getaddrinfo("nonexistent.invalid", 80)
  File "/usr/local/lib/python3.11/socket.py", line 962, in getaddrinfo
    for res in _socket.getaddrinfo(host, port, family, type, proto, flags):
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
socket.gaierror: [Errno -3] Temporary failure in name resolution
"##;
        pub const PY_GROUP: &str = r##"  + Exception Group Traceback (most recent call last):
  |   File "/airlock/main.py", line 1, in <module>
  |     raise ExceptionGroup("many", [ValueError("a"), TypeError("b")])
  | ExceptionGroup: many (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | ValueError: a
    +---------------- 2 ----------------
    | TypeError: b
    +------------------------------------
"##;
        pub const PY_GROUP2: &str = r##"  + Exception Group Traceback (most recent call last):
  |   File "/airlock/main.py", line 12, in <module>
  |     raise ExceptionGroup("batch", errs)
  | ExceptionGroup: batch (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/airlock/main.py", line 8, in <module>
    |     fn()
    |   File "/airlock/main.py", line 2, in a
    |     raise ValueError("a failed")
    | ValueError: a failed
    +---------------- 2 ----------------
    | Traceback (most recent call last):
    |   File "/airlock/main.py", line 8, in <module>
    |     fn()
    |   File "/airlock/main.py", line 4, in b
    |     raise TypeError("b failed")
    | TypeError: b failed
    +------------------------------------

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/airlock/main.py", line 14, in <module>
    raise RuntimeError("cleanup failed")
RuntimeError: cleanup failed
"##;
        pub const PY_GROUP3: &str = r##"  + Exception Group Traceback (most recent call last):
  |   File "/airlock/main.py", line 8, in <module>
  |     raise ExceptionGroup("batch", errs)
  | ExceptionGroup: batch (1 sub-exception)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/airlock/main.py", line 5, in <module>
    |     a()
    |   File "/airlock/main.py", line 2, in a
    |     raise ValueError("a failed")
    | ValueError: a failed
    +------------------------------------
"##;
        pub const PY_IMP: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 1, in <module>
    import helper
  File "/airlock/helper.py", line 1
    def f(:
          ^
SyntaxError: invalid syntax
"##;
        pub const PY_INDENT: &str = r##"  File "/airlock/main.py", line 3
    y = 2
IndentationError: unexpected indent
"##;
        pub const PY_KEYBOARD: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 1, in <module>
    raise KeyboardInterrupt
KeyboardInterrupt
"##;
        pub const PY_KEYERROR: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 2, in <module>
    print(d["b"])
          ~^^^^^
KeyError: 'b'
"##;
        pub const PY_LIB_FRAME: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 2, in <module>
    json.loads("{bad")
  File "/usr/local/lib/python3.11/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/json/decoder.py", line 337, in decode
    obj, end = self.raw_decode(s, idx=_w(s, 0).end())
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/json/decoder.py", line 353, in raw_decode
    obj, end = self.scan_once(s, idx)
               ^^^^^^^^^^^^^^^^^^^^^^
json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)
"##;
        pub const PY_LOCAL_CLS: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 5, in <module>
    f()
  File "/airlock/main.py", line 4, in f
    raise LocalErr("inner")
f.<locals>.LocalErr: inner
"##;
        pub const PY_MEM: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 3, in <module>
    x = bytearray(500*1024*1024)
        ^^^^^^^^^^^^^^^^^^^^^^^^
MemoryError
"##;
        pub const PY_MOD: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 1, in <module>
    import pandas as pd
ModuleNotFoundError: No module named 'pandas'
"##;
        pub const PY_NAME: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 1, in <module>
    print(undefined_var)
          ^^^^^^^^^^^^^
NameError: name 'undefined_var' is not defined
"##;
        pub const PY_NOMSG: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 2, in <module>
    raise RuntimeError
RuntimeError
"##;
        pub const PY_NOTES: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 3, in <module>
    raise e
ValueError: with note
note one
"##;
        pub const PY_NULL: &str = r##"  File "/airlock/main.py", line 1
    x = 1
SyntaxError: source code cannot contain null bytes
"##;
        pub const PY_PERM: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 1, in <module>
    with open("/etc/airlock_test_file", "w") as f:
         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
PermissionError: [Errno 13] Permission denied: '/etc/airlock_test_file'
"##;
        pub const PY_RECURSION: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 3, in <module>
    f(0)
  File "/airlock/main.py", line 2, in f
    return f(n + 1)
           ^^^^^^^^
  File "/airlock/main.py", line 2, in f
    return f(n + 1)
           ^^^^^^^^
  File "/airlock/main.py", line 2, in f
    return f(n + 1)
           ^^^^^^^^
  [Previous line repeated 996 more times]
RecursionError: maximum recursion depth exceeded
"##;
        pub const PY_REQUESTS_NETNS: &str = r##"Traceback (most recent call last):
  File "/usr/local/lib/python3.11/site-packages/urllib3/connection.py", line 204, in _new_conn
    sock = connection.create_connection(
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/urllib3/util/connection.py", line 60, in create_connection
    for res in socket.getaddrinfo(host, port, family, socket.SOCK_STREAM):
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/socket.py", line 962, in getaddrinfo
    for res in _socket.getaddrinfo(host, port, family, type, proto, flags):
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
socket.gaierror: [Errno -3] Temporary failure in name resolution

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/usr/local/lib/python3.11/site-packages/urllib3/connectionpool.py", line 788, in urlopen
    response = self._make_request(
               ^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/urllib3/connectionpool.py", line 493, in _make_request
    conn.request(
  File "/usr/local/lib/python3.11/site-packages/urllib3/connection.py", line 500, in request
    self.endheaders()
  File "/usr/local/lib/python3.11/http/client.py", line 1289, in endheaders
    self._send_output(message_body, encode_chunked=encode_chunked)
  File "/usr/local/lib/python3.11/http/client.py", line 1048, in _send_output
    self.send(msg)
  File "/usr/local/lib/python3.11/http/client.py", line 986, in send
    self.connect()
  File "/usr/local/lib/python3.11/site-packages/urllib3/connection.py", line 331, in connect
    self.sock = self._new_conn()
                ^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/urllib3/connection.py", line 211, in _new_conn
    raise NameResolutionError(self.host, self, e) from e
urllib3.exceptions.NameResolutionError: HTTPConnection(host='nonexistent.invalid', port=80): Failed to resolve 'nonexistent.invalid' ([Errno -3] Temporary failure in name resolution)

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/usr/local/lib/python3.11/site-packages/requests/adapters.py", line 696, in send
    resp = conn.urlopen(
           ^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/urllib3/connectionpool.py", line 842, in urlopen
    retries = retries.increment(
              ^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/urllib3/util/retry.py", line 543, in increment
    raise MaxRetryError(_pool, url, reason) from reason  # type: ignore[arg-type]
    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
urllib3.exceptions.MaxRetryError: HTTPConnectionPool(host='nonexistent.invalid', port=80): Max retries exceeded with url: / (Caused by NameResolutionError("HTTPConnection(host='nonexistent.invalid', port=80): Failed to resolve 'nonexistent.invalid' ([Errno -3] Temporary failure in name resolution)"))

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/airlock/main.py", line 2, in <module>
    r = requests.get("http://nonexistent.invalid/", timeout=5)
        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/requests/api.py", line 87, in get
    return request("get", url, params=params, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/requests/api.py", line 71, in request
    return session.request(method=method, url=url, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/requests/sessions.py", line 651, in request
    resp = self.send(prep, **send_kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/requests/sessions.py", line 784, in send
    r = adapter.send(request, **kwargs)
        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/requests/adapters.py", line 729, in send
    raise ConnectionError(e, request=request)
requests.exceptions.ConnectionError: HTTPConnectionPool(host='nonexistent.invalid', port=80): Max retries exceeded with url: / (Caused by NameResolutionError("HTTPConnection(host='nonexistent.invalid', port=80): Failed to resolve 'nonexistent.invalid' ([Errno -3] Temporary failure in name resolution)"))
"##;
        pub const PY_SEGV: &str = r##"Fatal Python error: Segmentation fault

Current thread 0x00007fe957e1ab80 (most recent call first):
  File "/usr/local/lib/python3.11/ctypes/__init__.py", line 519 in string_at
  File "/airlock/main.py", line 2 in <module>
"##;
        pub const PY_SKLEARN: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 1, in <module>
    from sklearn.linear_model import LinearRegression
ModuleNotFoundError: No module named 'sklearn'
"##;
        pub const PY_SYNTAX: &str = r##"  File "/airlock/main.py", line 2
    print("a" +)
               ^
SyntaxError: invalid syntax
"##;
        pub const PY_SYSEXIT_MSG: &str = r##"fatal: config missing
"##;
        pub const PY_TAB: &str = r##"  File "/airlock/main.py", line 3
    y = 2
TabError: inconsistent use of tabs and spaces in indentation
"##;
        pub const PY_UNREACH: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 2, in <module>
    socket.create_connection(("93.184.216.34", 80), timeout=3)
  File "/usr/local/lib/python3.11/socket.py", line 851, in create_connection
    raise exceptions[0]
  File "/usr/local/lib/python3.11/socket.py", line 836, in create_connection
    sock.connect(sa)
OSError: [Errno 101] Network is unreachable
"##;
        pub const PY_UNTERMINATED: &str = r##"  File "/airlock/main.py", line 2
    s = "abc
        ^
SyntaxError: unterminated string literal (detected at line 2)
"##;
        pub const PY_URLLIB: &str = r##"Traceback (most recent call last):
  File "/usr/local/lib/python3.11/urllib/request.py", line 1348, in do_open
    h.request(req.get_method(), req.selector, req.data, headers,
  File "/usr/local/lib/python3.11/http/client.py", line 1294, in request
    self._send_request(method, url, body, headers, encode_chunked)
  File "/usr/local/lib/python3.11/http/client.py", line 1340, in _send_request
    self.endheaders(body, encode_chunked=encode_chunked)
  File "/usr/local/lib/python3.11/http/client.py", line 1289, in endheaders
    self._send_output(message_body, encode_chunked=encode_chunked)
  File "/usr/local/lib/python3.11/http/client.py", line 1048, in _send_output
    self.send(msg)
  File "/usr/local/lib/python3.11/http/client.py", line 986, in send
    self.connect()
  File "/usr/local/lib/python3.11/http/client.py", line 952, in connect
    self.sock = self._create_connection(
                ^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/socket.py", line 827, in create_connection
    for res in getaddrinfo(host, port, 0, SOCK_STREAM):
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/socket.py", line 962, in getaddrinfo
    for res in _socket.getaddrinfo(host, port, family, type, proto, flags):
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
socket.gaierror: [Errno -2] Name or service not known

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/airlock/main.py", line 2, in <module>
    urllib.request.urlopen("http://nonexistent.invalid/")
  File "/usr/local/lib/python3.11/urllib/request.py", line 216, in urlopen
    return opener.open(url, data, timeout)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/urllib/request.py", line 519, in open
    response = self._open(req, data)
               ^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/urllib/request.py", line 536, in _open
    result = self._call_chain(self.handle_open, protocol, protocol +
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/urllib/request.py", line 496, in _call_chain
    result = func(*args)
             ^^^^^^^^^^^
  File "/usr/local/lib/python3.11/urllib/request.py", line 1377, in http_open
    return self.do_open(http.client.HTTPConnection, req)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/urllib/request.py", line 1351, in do_open
    raise URLError(err)
urllib.error.URLError: <urlopen error [Errno -2] Name or service not known>
"##;
        pub const PY_URLLIB_NETNS: &str = r##"Traceback (most recent call last):
  File "/usr/local/lib/python3.11/urllib/request.py", line 1348, in do_open
    h.request(req.get_method(), req.selector, req.data, headers,
  File "/usr/local/lib/python3.11/http/client.py", line 1294, in request
    self._send_request(method, url, body, headers, encode_chunked)
  File "/usr/local/lib/python3.11/http/client.py", line 1340, in _send_request
    self.endheaders(body, encode_chunked=encode_chunked)
  File "/usr/local/lib/python3.11/http/client.py", line 1289, in endheaders
    self._send_output(message_body, encode_chunked=encode_chunked)
  File "/usr/local/lib/python3.11/http/client.py", line 1048, in _send_output
    self.send(msg)
  File "/usr/local/lib/python3.11/http/client.py", line 986, in send
    self.connect()
  File "/usr/local/lib/python3.11/http/client.py", line 952, in connect
    self.sock = self._create_connection(
                ^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/socket.py", line 827, in create_connection
    for res in getaddrinfo(host, port, 0, SOCK_STREAM):
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/socket.py", line 962, in getaddrinfo
    for res in _socket.getaddrinfo(host, port, family, type, proto, flags):
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
socket.gaierror: [Errno -3] Temporary failure in name resolution

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/airlock/main.py", line 2, in <module>
    urllib.request.urlopen("http://nonexistent.invalid/")
  File "/usr/local/lib/python3.11/urllib/request.py", line 216, in urlopen
    return opener.open(url, data, timeout)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/urllib/request.py", line 519, in open
    response = self._open(req, data)
               ^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/urllib/request.py", line 536, in _open
    result = self._call_chain(self.handle_open, protocol, protocol +
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/urllib/request.py", line 496, in _call_chain
    result = func(*args)
             ^^^^^^^^^^^
  File "/usr/local/lib/python3.11/urllib/request.py", line 1377, in http_open
    return self.do_open(http.client.HTTPConnection, req)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/urllib/request.py", line 1351, in do_open
    raise URLError(err)
urllib.error.URLError: <urlopen error [Errno -3] Temporary failure in name resolution>
"##;
        pub const PY_UTF: &str = r##"SyntaxError: Non-UTF-8 code starting with '\xff' in file /airlock/main.py on line 1, but no encoding declared; see https://peps.python.org/pep-0263/ for details
"##;
        pub const PY_WARN_THEN_ERR: &str = r##"/airlock/main.py:2: UserWarning: careful
  warnings.warn("careful")
progress
Traceback (most recent call last):
  File "/airlock/main.py", line 4, in <module>
    assert 1 == 2, "numbers differ"
           ^^^^^^
AssertionError: numbers differ
"##;
        pub const PY_ZERODIV: &str = r##"Traceback (most recent call last):
  File "/airlock/main.py", line 7, in <module>
    g()
  File "/airlock/main.py", line 5, in g
    return f(0)
           ^^^^
  File "/airlock/main.py", line 2, in f
    return 1 / x
           ~~^~~
ZeroDivisionError: division by zero
"##;
        pub const SH_BADCMD_PATH: &str = r##"/airlock/main.sh: line 1: ./missing_tool: No such file or directory
"##;
        pub const SH_CAT: &str = r##"cat: /nonexistent/file.txt: No such file or directory
"##;
        pub const SH_CD: &str = r##"/airlock/main.sh: line 2: cd: /nonexistent/dir: No such file or directory
"##;
        pub const SH_CNF: &str = r##"/airlock/main.sh: line 3: foo: command not found
"##;
        pub const SH_CURL: &str = r##"curl: (6) Could not resolve host: example.com
"##;
        pub const SH_EOF: &str = r##"/airlock/main.sh: line 3: syntax error: unexpected end of file
"##;
        pub const SH_EROFS: &str = r##"/airlock/main.sh: line 1: /tmp/ro/out.txt: Read-only file system
"##;
        pub const SH_EROFS_TOUCH: &str = r##"touch: cannot touch '/tmp/ro/out.txt': Read-only file system
"##;
        pub const SH_EXIT: &str = r##"something on stderr
"##;
        pub const SH_KILLED: &str = r##"/airlock/main.sh: line 3:  7129 Killed                  sleep 100
"##;
        pub const SH_NOEXEC: &str = r##"/airlock/main.sh: line 3: /tmp/notexec.sh: Permission denied
"##;
        pub const SH_PERM: &str = r##"/airlock/main.sh: line 1: /etc/airlock_test: Permission denied
"##;
        pub const SH_PY: &str = r##"running
Traceback (most recent call last):
  File "<string>", line 1, in <module>
  File "/usr/local/lib/python3.11/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/json/decoder.py", line 337, in decode
    obj, end = self.raw_decode(s, idx=_w(s, 0).end())
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/json/decoder.py", line 353, in raw_decode
    obj, end = self.scan_once(s, idx)
               ^^^^^^^^^^^^^^^^^^^^^^
json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)
"##;
        pub const SH_REDIRECT: &str = r##"/airlock/main.sh: line 1: /nonexistent/input.txt: No such file or directory
"##;
        pub const SH_SYNTAX: &str = r##"/airlock/main.sh: line 4: syntax error near unexpected token `)'
/airlock/main.sh: line 4: `fi)'
"##;
        pub const SH_UNBOUND: &str = r##"/airlock/main.sh: line 2: UNDEFINED_THING: unbound variable
"##;
        pub const SH_WGET: &str = r##"--2026-12-02 04:38:54--  http://example.com/
Resolving example.com (example.com)... failed: Temporary failure in name resolution.
wget: unable to resolve host address ‘example.com’
"##;
    }
}
