//! `airlock env list | create | prune`, and the install progress display shared with `run`.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use runtime::environment::{self, Pruned};
use runtime::{EnvInfo, PackageConfig, Progress, language};

use crate::run::EXIT_SANDBOX;

#[derive(Subcommand, Debug)]
pub enum EnvCmd {
    /// Show the stored environments: key, language, specs, size, last use.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Build (or find) the environment for SPEC… without running anything.
    Create {
        /// pip requirement specifiers (python) or npm specs (javascript).
        #[arg(required = true)]
        specs: Vec<String>,
        /// python (default) or javascript.
        #[arg(long = "lang", short = 'l', default_value = "python")]
        lang: String,
        /// Explicit opt-in: accept URLs, local paths and VCS references.
        #[arg(long)]
        allow_unsafe_specs: bool,
        /// Explicit opt-in to rlimit-only limits for the install where no cgroup can be made.
        #[arg(long)]
        weak_limits: bool,
        /// Print the environment's record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove environments unused for --older-than, or --all; always removes what failed or
    /// interrupted installs left. Environments in use are skipped.
    Prune {
        /// Age of last use, e.g. 30d, 12h, 90m, 45s.
        #[arg(long, value_parser = parse_age)]
        older_than: Option<Duration>,
        /// Every environment.
        #[arg(long)]
        all: bool,
        /// Print what was removed as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn main(cmd: EnvCmd) -> i32 {
    let config = PackageConfig::default();
    let json = matches!(
        cmd,
        EnvCmd::List { json: true }
            | EnvCmd::Create { json: true, .. }
            | EnvCmd::Prune { json: true, .. }
    );
    let done = match cmd {
        EnvCmd::List { json } => environment::list(&config).map(|envs| {
            if json {
                println!("{}", serde_json::to_string(&envs).unwrap_or_default());
            } else {
                print_table(&envs);
            }
        }),
        EnvCmd::Create {
            specs,
            lang,
            allow_unsafe_specs,
            weak_limits,
            json,
        } => {
            let Some(language) = language::parse(&lang).filter(|l| *l != runtime::Language::Shell)
            else {
                return fail(
                    json,
                    &format!("invalid `lang`: {lang:?} is not python or javascript"),
                    "InvalidInput",
                );
            };
            let mut progress = InstallProgress::new(!json && std::io::stderr().is_terminal());
            let r = environment::create(
                language,
                &specs,
                allow_unsafe_specs,
                &config,
                weak_limits,
                &mut |p| progress.event(p),
            );
            drop(progress);
            runtime::release_host_resources();
            r.map(|(info, cached)| {
                if json {
                    let mut v = serde_json::to_value(&info).unwrap_or_default();
                    v["cached"] = serde_json::Value::Bool(cached);
                    println!("{v}");
                } else {
                    println!(
                        "{} {} ({}, {})",
                        info.key,
                        info.specs.join(" "),
                        human_size(info.size_bytes),
                        if cached { "already built" } else { "built" }
                    );
                }
            })
        }
        EnvCmd::Prune {
            older_than,
            all,
            json,
        } => environment::prune(&config, older_than, all).map(|p| {
            if json {
                println!("{}", serde_json::to_string(&p).unwrap_or_default());
            } else {
                print_pruned(&p, older_than.is_none() && !all);
            }
        }),
    };
    match done {
        Ok(()) => 0,
        Err(e) => fail(json, &e.to_string(), e.kind()),
    }
}

fn fail(json: bool, message: &str, kind: &str) -> i32 {
    if json {
        println!(
            "{}",
            serde_json::json!({"status": "sandbox_error", "error": {"type": kind, "message": message}})
        );
    } else {
        eprintln!("airlock: {message}");
    }
    EXIT_SANDBOX
}

fn print_table(envs: &[EnvInfo]) {
    if envs.is_empty() {
        println!("no environments (a run with -p SPEC or `airlock env create SPEC` builds one)");
        return;
    }
    println!(
        "{:<20}  {:<10}  {:>9}  {:<10}  SPECS",
        "KEY", "LANG", "SIZE", "LAST USE"
    );
    let now = unix_now();
    for e in envs {
        println!(
            "{:<20}  {:<10}  {:>9}  {:<10}  {}",
            e.key,
            e.language,
            human_size(e.size_bytes),
            ago(now, e.last_used),
            e.specs.join(" ")
        );
    }
}

fn print_pruned(p: &Pruned, nothing_asked: bool) {
    for e in &p.removed {
        println!(
            "removed {} {} ({})",
            e.key,
            e.specs.join(" "),
            human_size(e.size_bytes)
        );
    }
    for k in &p.busy {
        println!("kept {k}: in use");
    }
    if p.debris > 0 {
        println!(
            "removed {} leftover(s) of failed or interrupted installs",
            p.debris
        );
    }
    if p.probes > 0 {
        println!(
            "removed {} remembered interpreter answer(s), to be asked again when needed",
            p.probes
        );
    }
    let freed: u64 = p.removed.iter().map(|e| e.size_bytes).sum();
    println!(
        "{} environment(s) removed, {} freed",
        p.removed.len(),
        human_size(freed)
    );
    if nothing_asked {
        println!("(give --older-than AGE or --all to remove environments themselves)");
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ago(now: u64, then: u64) -> String {
    if then == 0 {
        return "unknown".into();
    }
    let s = now.saturating_sub(then);
    match s {
        0..60 => "just now".into(),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

fn human_size(b: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `30d`, `12h`, `90m`, `45s`, or plain seconds.
fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not an age such as 30d, 12h, 90m or 45s"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err(format!("{s:?}: unit must be s, m, h, d or w")),
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

/// A spinner on stderr while an install runs, showing the installer's latest line. Shown only
/// on a terminal (never with `--json` or when stderr is a pipe); a hit shows nothing.
pub struct InstallProgress {
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl InstallProgress {
    pub fn new(enabled: bool) -> InstallProgress {
        InstallProgress { enabled, bar: None }
    }

    pub fn event(&mut self, p: &Progress) {
        if !self.enabled {
            return;
        }
        match p {
            Progress::Installing { key, specs, .. } => {
                let bar = ProgressBar::new_spinner();
                if let Ok(style) =
                    ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                {
                    bar.set_style(style);
                }
                let mut shown = specs.join(" ");
                if shown.len() > 60 {
                    shown = format!("{}…", shown.chars().take(59).collect::<String>());
                }
                bar.set_prefix(format!("installing {shown} ({key})"));
                bar.enable_steady_tick(Duration::from_millis(100));
                self.bar = Some(bar);
            }
            Progress::Output(line) => {
                if let Some(bar) = &self.bar {
                    bar.set_message(line.clone());
                }
            }
            Progress::Installed { key, elapsed } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                    eprintln!(
                        "airlock: installed environment {key} in {:.1} s",
                        elapsed.as_secs_f64()
                    );
                }
            }
        }
    }
}

impl Drop for InstallProgress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_age("45").unwrap(), Duration::from_secs(45));
        assert!(parse_age("3y").is_err());
        assert!(parse_age("x").is_err());
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
        assert_eq!(ago(1000, 0), "unknown");
        assert_eq!(ago(7200, 3600), "1h ago");
    }
}
