//! Package specifiers: what a run may ask an installer for, and their canonical form.
//!
//! A specifier reaches `uv` or `npm` as a command-line argument, so it is the one place where a
//! caller's text steers a tool that has the network. Only a conservative grammar passes by
//! default — a registry name with a version constraint — and everything else (an option such
//! as `--index-url`, a URL, a local path, a VCS reference) is refused with the reason, unless
//! the caller opts in with `allow_unsafe_specs`. Options are refused even then: the index is
//! configured through [`super::PackageConfig`], never through a specifier.
//!
//! The canonical form (names normalized, clauses and extras sorted, spaces dropped) is what the
//! cache key hashes, so `Requests >= 2, <3` and `requests<3,>=2` share one environment.

use std::path::PathBuf;

use crate::diagnose::Language;
use crate::error::RuntimeError;

/// DESIGN §7: at most this many packages per run.
pub const MAX_PACKAGES: usize = 100;
/// Longest accepted specifier, in bytes.
pub const MAX_SPEC_LEN: usize = 200;

/// A validated specifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Spec {
    /// A registry package with an optional version constraint, in canonical form.
    Registry(String),
    /// A URL or VCS reference, passed through verbatim (only with `allow_unsafe_specs`).
    Remote(String),
    /// A file or directory on the host (only with `allow_unsafe_specs`). `prefix` is kept in
    /// front of the in-sandbox path (`name @ ` for Python, `name@` for npm), `path` is the
    /// canonical host path.
    Local { prefix: String, path: PathBuf },
}

impl Spec {
    /// The text the cache key hashes for this specifier.
    pub(crate) fn canonical(&self) -> String {
        match self {
            Spec::Registry(s) => s.clone(),
            Spec::Remote(s) => format!("remote:{s}"),
            Spec::Local { prefix, path } => {
                // Content is not hashed (that would mean reading a whole tree on every run);
                // a file's size and mtime at least make a rebuilt wheel a new environment.
                let stamp = std::fs::metadata(path)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| {
                        use std::os::unix::fs::MetadataExt;
                        format!(" size={} mtime={}.{}", m.size(), m.mtime(), m.mtime_nsec())
                    })
                    .unwrap_or_default();
                format!("local:{prefix}{}{stamp}", path.display())
            }
        }
    }
}

fn refuse(why: String) -> RuntimeError {
    RuntimeError::invalid("packages", why)
}

/// Validates and canonicalizes every specifier of a run: sorted, duplicates removed.
pub(crate) fn parse_all(
    language: Language,
    specs: &[String],
    allow_unsafe: bool,
) -> Result<Vec<Spec>, RuntimeError> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    if language == Language::Shell {
        return Err(refuse(
            "packages are installed for python (pip specifiers) and javascript (npm specs); \
             a shell run has no package manager"
                .into(),
        ));
    }
    if specs.len() > MAX_PACKAGES {
        return Err(refuse(format!(
            "{} packages given; the limit is {MAX_PACKAGES} per run",
            specs.len()
        )));
    }
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        out.push(parse(language, s, allow_unsafe)?);
    }
    out.sort_by_key(Spec::canonical);
    out.dedup();
    Ok(out)
}

/// Validates one specifier.
pub(crate) fn parse(
    language: Language,
    raw: &str,
    allow_unsafe: bool,
) -> Result<Spec, RuntimeError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(refuse("an empty package specifier".into()));
    }
    if s.len() > MAX_SPEC_LEN {
        return Err(refuse(format!(
            "{:?}… is {} bytes long; the limit is {MAX_SPEC_LEN}",
            s.chars().take(40).collect::<String>(),
            s.len()
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(refuse(format!(
            "{s:?} contains a control character (one specifier per entry)"
        )));
    }
    if s.starts_with('-') {
        return Err(refuse(format!(
            "{s:?} looks like an installer option; options are never accepted in a specifier \
             (configure the index with AIRLOCK_INDEX_URL / AIRLOCK_FIND_LINKS or the request's \
             package config instead)"
        )));
    }
    // `pkg-1.0.tar.gz` is a valid-looking name but installers take it for a file.
    let archive = [".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2"]
        .iter()
        .any(|e| s.to_ascii_lowercase().ends_with(e));
    let registry = match language {
        _ if archive => None,
        Language::Python => python_registry(s),
        Language::JavaScript => npm_registry(s),
        Language::Shell => None,
    };
    if let Some(canon) = registry {
        return Ok(Spec::Registry(canon));
    }
    let (kind, spec) = classify_unsafe(language, s);
    if !allow_unsafe {
        let what = match kind {
            Unsafe::Url => "a URL",
            Unsafe::Vcs => "a VCS reference",
            Unsafe::Path => "a local path",
            Unsafe::Malformed => {
                return Err(refuse(format!(
                    "{s:?} is not a valid {} (expected {})",
                    match language {
                        Language::JavaScript => "npm spec",
                        _ => "pip requirement specifier",
                    },
                    match language {
                        Language::JavaScript => "NAME, NAME@VERSION or @SCOPE/NAME@RANGE",
                        _ => "NAME, NAME==VERSION, NAME[EXTRA]>=X,<Y or NAME; MARKER",
                    }
                )));
            }
        };
        return Err(refuse(format!(
            "{s:?} is {what}; only registry packages are accepted unless you explicitly allow \
             unsafe specifiers (`--allow-unsafe-specs`, `allow_unsafe_specs`)"
        )));
    }
    match (kind, spec) {
        (Unsafe::Malformed, _) => Err(refuse(format!("{s:?} is not a valid package specifier"))),
        (Unsafe::Path, Some((prefix, path))) => {
            let abs = std::fs::canonicalize(&path)
                .map_err(|e| refuse(format!("{s:?}: the local path {}: {e}", path.display())))?;
            Ok(Spec::Local { prefix, path: abs })
        }
        _ => Ok(Spec::Remote(s.to_owned())),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unsafe {
    Url,
    Vcs,
    Path,
    Malformed,
}

/// What kind of non-registry specifier `s` is; for a local path also its prefix and path.
fn classify_unsafe(language: Language, s: &str) -> (Unsafe, Option<(String, PathBuf)>) {
    // `name @ target` (PEP 508 direct reference) or `name@target` (npm).
    let (prefix, target) = match language {
        Language::Python => match s.split_once('@') {
            Some((n, t)) if is_python_name(n.trim()) => (format!("{} @ ", n.trim()), t.trim()),
            _ => (String::new(), s),
        },
        _ => match npm_split(s) {
            Some((n, Some(t))) => (format!("{n}@"), t),
            _ => (String::new(), s),
        },
    };
    let lower = target.to_ascii_lowercase();
    const VCS: &[&str] = &[
        "git+",
        "hg+",
        "svn+",
        "bzr+",
        "git:",
        "github:",
        "gitlab:",
        "bitbucket:",
        "gist:",
    ];
    if VCS.iter().any(|v| lower.starts_with(v)) {
        return (Unsafe::Vcs, None);
    }
    if let Some(rest) = lower.strip_prefix("file:") {
        let path = target[target.len() - rest.len()..].trim_start_matches("//");
        // file:///abs -> /abs; npm's file:../rel stays relative.
        let path = if path.starts_with('/') || language == Language::JavaScript {
            path
        } else {
            return (Unsafe::Path, None);
        };
        return (Unsafe::Path, Some((prefix, PathBuf::from(path))));
    }
    if target.contains("://") {
        return (Unsafe::Url, None);
    }
    if target.starts_with('/')
        || target.starts_with("./")
        || target.starts_with("../")
        || target == "."
        || target == ".."
    {
        return (Unsafe::Path, Some((prefix, PathBuf::from(target))));
    }
    if target.starts_with('~') || target.contains('\\') {
        return (Unsafe::Path, None);
    }
    let archive = [".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2"]
        .iter()
        .any(|e| lower.ends_with(e));
    if archive {
        return (Unsafe::Path, Some((prefix, PathBuf::from(target))));
    }
    if language == Language::JavaScript
        && prefix.is_empty()
        && s.contains('/')
        && !s.starts_with('@')
    {
        // `user/repo` is npm's GitHub shorthand.
        return (Unsafe::Vcs, None);
    }
    if s.contains('/') {
        return (Unsafe::Path, None);
    }
    (Unsafe::Malformed, None)
}

fn is_python_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// PEP 503 normalization: lowercase, runs of `-`, `_`, `.` become one `-`.
fn normalize_python_name(n: &str) -> String {
    let mut out = String::with_capacity(n.len());
    let mut sep = false;
    for c in n.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

const PY_OPS: &[&str] = &["===", "==", "!=", "<=", ">=", "~=", "<", ">"];

/// The canonical form of a registry requirement (`name[extras] clauses ; marker`), or `None`
/// when `s` is not one.
fn python_registry(s: &str) -> Option<String> {
    let (req, marker) = match s.split_once(';') {
        Some((r, m)) => (r.trim(), Some(m.trim())),
        None => (s, None),
    };
    let name_end = req
        .find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
        .unwrap_or(req.len());
    let name = &req[..name_end];
    if !is_python_name(name) {
        return None;
    }
    let mut rest = req[name_end..].trim_start();
    let mut extras = Vec::new();
    if let Some(r) = rest.strip_prefix('[') {
        let (inside, after) = r.split_once(']')?;
        for e in inside.split(',') {
            let e = e.trim();
            if !is_python_name(e) {
                return None;
            }
            extras.push(normalize_python_name(e));
        }
        extras.sort();
        extras.dedup();
        rest = after.trim_start();
    }
    let mut clauses = Vec::new();
    let mut body = rest.trim();
    if let Some(inner) = body.strip_prefix('(').and_then(|b| b.strip_suffix(')')) {
        body = inner.trim();
    }
    if !body.is_empty() {
        for clause in body.split(',') {
            let clause = clause.trim();
            let op = PY_OPS.iter().find(|op| clause.starts_with(**op))?;
            let version = clause[op.len()..].trim_start();
            let ok = !version.is_empty()
                && version
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".*+!_-".contains(&b));
            if !ok {
                return None;
            }
            clauses.push(format!("{op}{}", version.to_ascii_lowercase()));
        }
        clauses.sort();
        clauses.dedup();
    }
    let mut out = normalize_python_name(name);
    if !extras.is_empty() {
        out.push_str(&format!("[{}]", extras.join(",")));
    }
    out.push_str(&clauses.join(","));
    if let Some(m) = marker {
        // Markers compare the environment with literals; they never name a location.
        let ok = !m.is_empty()
            && m.chars()
                .all(|c| c.is_ascii_alphanumeric() || " ._<>=!~'\"()-".contains(c));
        if !ok {
            return None;
        }
        out.push_str("; ");
        out.push_str(&m.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    Some(out)
}

/// Splits an npm spec into its name and what follows the version `@`, if it is shaped like
/// `[@scope/]name[@…]`.
fn npm_split(s: &str) -> Option<(&str, Option<&str>)> {
    let at = if let Some(scoped) = s.strip_prefix('@') {
        let slash = scoped.find('/')?;
        scoped[slash..].find('@').map(|i| 1 + slash + i)
    } else {
        s.find('@')
    };
    let (name, rest) = match at {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    is_npm_name(name).then_some((name, rest))
}

fn is_npm_name(n: &str) -> bool {
    let part = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_alphanumeric())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(c))
    };
    if n.is_empty() || n.len() > 214 {
        return false;
    }
    match n.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('/') {
            Some((scope, name)) => part(scope) && part(name),
            None => false,
        },
        None => part(n),
    }
}

/// The canonical form of a registry npm spec (`name` or `name@range-or-tag`), or `None`.
fn npm_registry(s: &str) -> Option<String> {
    let (name, range) = npm_split(s)?;
    match range {
        None => Some(name.to_owned()),
        Some(r) => {
            let r = r.split_whitespace().collect::<Vec<_>>().join(" ");
            let ok = !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".*^~<>=|+ _-".contains(&b));
            ok.then(|| format!("{name}@{r}"))
        }
    }
}

/// For npm: `name@X.Y.Z` exactly (the form a tarball in a find-links directory can serve).
pub(crate) fn npm_exact(spec: &str) -> Option<(&str, &str)> {
    let (name, version) = npm_split(spec)?;
    let v = version?;
    let exact = v.split(['.', '-', '+']).count() >= 3
        && v.as_bytes()[0].is_ascii_digit()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b));
    exact.then_some((name, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(s: &str) -> Result<Spec, RuntimeError> {
        parse(Language::Python, s, false)
    }
    fn js(s: &str) -> Result<Spec, RuntimeError> {
        parse(Language::JavaScript, s, false)
    }
    fn why(r: Result<Spec, RuntimeError>) -> String {
        match r {
            Err(RuntimeError::InvalidInput { field, why }) => {
                assert_eq!(field, "packages");
                why
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn python_registry_specs_are_canonical() {
        for (given, canon) in [
            ("requests==2.31.0", "requests==2.31.0"),
            ("Requests == 2.31.0", "requests==2.31.0"),
            ("zope.interface", "zope-interface"),
            ("Foo__Bar>=1.0 , <2", "foo-bar<2,>=1.0"),
            ("foo-bar<2,>=1.0", "foo-bar<2,>=1.0"),
            (
                "pandas[Performance, excel]~=2.2",
                "pandas[excel,performance]~=2.2",
            ),
            ("numpy (>=1.26)", "numpy>=1.26"),
            (
                "tomli; python_version < '3.11'",
                "tomli; python_version < '3.11'",
            ),
            ("pkg===1.0+local", "pkg===1.0+local"),
            ("x!=1.*", "x!=1.*"),
        ] {
            assert_eq!(py(given).unwrap(), Spec::Registry(canon.into()), "{given}");
        }
    }

    #[test]
    fn npm_registry_specs_are_canonical() {
        for (given, canon) in [
            ("is-number", "is-number"),
            ("is-number@7.0.0", "is-number@7.0.0"),
            ("@types/node@^20", "@types/node@^20"),
            ("lodash@>=4.0.0   <5", "lodash@>=4.0.0 <5"),
            ("react@latest", "react@latest"),
            ("a@1.x || 2.x", "a@1.x || 2.x"),
        ] {
            assert_eq!(js(given).unwrap(), Spec::Registry(canon.into()), "{given}");
        }
    }

    #[test]
    fn options_are_refused_even_when_unsafe_is_allowed() {
        for bad in [
            "--index-url=http://evil.invalid/simple",
            "--index-url",
            "-e",
            "-e .",
            "-r requirements.txt",
            "--extra-index-url x",
            "-i http://x",
        ] {
            for allow in [false, true] {
                let w = why(parse(Language::Python, bad, allow));
                assert!(w.contains("option"), "{bad}: {w}");
                let w = why(parse(Language::JavaScript, bad, allow));
                assert!(w.contains("option"), "{bad}: {w}");
            }
        }
    }

    #[test]
    fn urls_paths_and_vcs_are_refused_by_default() {
        for (bad, what) in [
            ("pkg @ https://example.invalid/pkg-1.0.tar.gz", "a URL"),
            ("https://example.invalid/pkg-1.0-py3-none-any.whl", "a URL"),
            ("git+https://example.invalid/repo.git", "a VCS reference"),
            (
                "pkg @ git+ssh://git@example.invalid/r.git",
                "a VCS reference",
            ),
            ("hg+https://example.invalid/r", "a VCS reference"),
            ("./local/dir", "a local path"),
            ("/abs/pkg-1.0-py3-none-any.whl", "a local path"),
            ("../up", "a local path"),
            ("~/x", "a local path"),
            ("pkg-1.0.tar.gz", "a local path"),
            ("file:///tmp/x.whl", "a local path"),
            ("pkg @ file:///tmp/x", "a local path"),
        ] {
            let w = why(py(bad));
            assert!(w.contains(what), "{bad}: {w}");
            assert!(w.contains("allow"), "{bad}: {w}");
        }
        for (bad, what) in [
            ("https://example.invalid/x.tgz", "a URL"),
            ("git+https://example.invalid/r.git", "a VCS reference"),
            ("github:user/repo", "a VCS reference"),
            ("user/repo", "a VCS reference"),
            ("x@git+https://example.invalid/r.git", "a VCS reference"),
            ("file:../x", "a local path"),
            ("x@file:../x", "a local path"),
            ("./x", "a local path"),
            ("/abs/x.tgz", "a local path"),
            ("x@https://example.invalid/x.tgz", "a URL"),
        ] {
            let w = why(js(bad));
            assert!(w.contains(what), "{bad}: {w}");
        }
    }

    #[test]
    fn malformed_and_oversized_specs_are_refused() {
        for bad in [
            "",
            "   ",
            "requests\n--index-url=x",
            "requests==",
            "requests=2",
            "requests==2.0 extra",
            "re$quests",
            "pkg[ex tra",
            "pkg; os.system('x')/",
            "alias@npm:real@1",
        ] {
            assert!(py(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "Has Space", "x@npm:y@1", "x@1;rm", "@scope", "x@"] {
            assert!(js(bad).is_err(), "{bad:?}");
        }
        let long = format!("a{}", "b".repeat(MAX_SPEC_LEN));
        assert!(why(py(&long)).contains("limit"));
        let many: Vec<String> = (0..=MAX_PACKAGES).map(|i| format!("p{i}")).collect();
        let w = match parse_all(Language::Python, &many, false) {
            Err(RuntimeError::InvalidInput { why, .. }) => why,
            o => panic!("{o:?}"),
        };
        assert!(w.contains("limit"), "{w}");
        assert!(parse_all(Language::Shell, &["x".into()], false).is_err());
    }

    #[test]
    fn unsafe_specs_pass_when_allowed() {
        let dir = std::env::temp_dir();
        assert!(matches!(
            parse(Language::Python, "git+https://example.invalid/r.git", true),
            Ok(Spec::Remote(_))
        ));
        match parse(
            Language::Python,
            &format!("pkg @ file://{}", dir.display()),
            true,
        ) {
            Ok(Spec::Local { prefix, path }) => {
                assert_eq!(prefix, "pkg @ ");
                assert_eq!(path, std::fs::canonicalize(&dir).unwrap());
            }
            o => panic!("{o:?}"),
        }
        match parse(
            Language::JavaScript,
            &format!("file:{}", dir.display()),
            true,
        ) {
            Ok(Spec::Local { prefix, .. }) => assert_eq!(prefix, ""),
            o => panic!("{o:?}"),
        }
        assert!(parse(Language::Python, "/nonexistent-airlock/x.whl", true).is_err());
    }

    #[test]
    fn parse_all_sorts_and_dedups() {
        let a = parse_all(
            Language::Python,
            &["b==1".into(), "A==2".into(), "a == 2".into()],
            false,
        )
        .unwrap();
        assert_eq!(
            a,
            vec![Spec::Registry("a==2".into()), Spec::Registry("b==1".into())]
        );
    }

    #[test]
    fn npm_exact_versions() {
        assert_eq!(npm_exact("is-number@7.0.0"), Some(("is-number", "7.0.0")));
        assert_eq!(npm_exact("@s/x@1.2.3-rc.1"), Some(("@s/x", "1.2.3-rc.1")));
        assert_eq!(npm_exact("is-number@^7.0.0"), None);
        assert_eq!(npm_exact("is-number"), None);
    }
}
