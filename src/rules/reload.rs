//! Hot reload: the rule files are read again on a change on disk, on SIGHUP, or when `/admin/reload` asks,
//! and swapped in whole when they compile; on any problem the running rules stay in force.
//!
//! A reload reads each file once and compiles exactly the text it read, on a blocking thread (file reads and
//! compiling globs and regexes are no work for the async workers). Editors write a file in several steps and
//! Kubernetes swaps a ConfigMap through a `..data` link, so file events are let settle for a moment and then
//! count as one change, and a change that leaves every file's text as it was causes no reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::file::RuleError;
use super::file::{RULES_DIR, RULES_FILE};
use super::{LiveRules, RulesError, compile, read_sources};
use crate::metric_names as names;

/// Rule-file events closer together than this are one reload (editors write files in several steps).
const RELOAD_SETTLE: Duration = Duration::from_millis(200);

type Sources = Vec<(PathBuf, String)>;

/// The last reload that did something: when, what asked for it, and the rule count or every problem.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    pub at: jiff::Timestamp,
    pub trigger: String,
    pub result: Result<usize, Vec<RuleError>>,
}

/// Reloads the rules of one config folder into the live rule set. Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    dir: PathBuf,
    live: LiveRules,
    /// The text of the files the running rules were compiled from, so events that change nothing are skipped.
    last: Arc<Mutex<Sources>>,
    report: Arc<Mutex<Option<ReloadReport>>>,
}

impl Reloader {
    /// A reloader for rules already loaded from `dir` into `live`.
    pub fn new(dir: PathBuf, live: LiveRules) -> Self {
        let last = read_sources(&dir).unwrap_or_default();
        Self {
            dir,
            live,
            last: Arc::new(Mutex::new(last)),
            report: Arc::default(),
        }
    }

    /// The last reload that swapped rules in or was refused; `None` while the rules loaded at start run.
    pub fn last_report(&self) -> Option<ReloadReport> {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads and compiles the rule files now and swaps them in; answers the number of rules or every problem.
    pub async fn reload(&self, trigger: &'static str) -> Result<usize, RulesError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload_now(trigger, false))
            .await
            .expect("a rule reload does not panic")
            .map(|n| n.unwrap_or_else(|| self.live.get().len()))
    }

    /// Reads the files once; compiles and swaps in what was read. With `only_if_changed`, files whose text is
    /// what the running rules came from cause nothing (`Ok(None)`).
    fn reload_now(
        &self,
        trigger: &str,
        only_if_changed: bool,
    ) -> Result<Option<usize>, RulesError> {
        let refused_before = matches!(
            self.last_report(),
            Some(ReloadReport { result: Err(_), .. })
        );
        let mut restored = false;
        let result = read_sources(&self.dir).and_then(|sources| {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if only_if_changed && *last == sources {
                // Unchanged, unless a refused change (a broken file added or edited) was undone since: then
                // the files are the running rules' again, and the refusal is no longer the state to show.
                restored = refused_before;
                return Ok(restored.then(|| self.live.get().len()));
            }
            let rules = compile(&sources)?;
            let n = rules.len();
            self.live.replace(rules);
            *last = sources;
            Ok(Some(n))
        });
        let report = |result| {
            *self.report.lock().unwrap_or_else(|e| e.into_inner()) = Some(ReloadReport {
                at: jiff::Timestamp::now(),
                trigger: trigger.to_owned(),
                result,
            });
        };
        match &result {
            Ok(None) => {}
            Ok(Some(n)) => report(Ok(*n)),
            Err(e) => report(Err(e.0.clone())),
        }
        match &result {
            Ok(None) => {}
            Ok(Some(n)) if restored => info!(
                trigger,
                rules = n,
                "rule files are back to the running rules; the refused change is gone"
            ),
            Ok(Some(n)) => {
                info!(trigger, rules = n, "rules reloaded");
                metrics::counter!(names::RULE_RELOADS, "result" => "ok").increment(1);
            }
            Err(e) => {
                metrics::counter!(names::RULE_RELOADS, "result" => "error").increment(1);
                for problem in &e.0 {
                    // The message may quote a pattern from the file (a phone number): only at debug.
                    error!(
                        trigger,
                        file = %problem.file.display(),
                        line = problem.line,
                        rule = problem.rule.as_deref(),
                        "rule file refused; the running rules stay in force (run `autoseen check` for details)"
                    );
                    tracing::debug!(problem = %problem, "rule file problem");
                }
            }
        }
        result
    }

    /// Reloads on changes to the rule files and on SIGHUP until `stop` is cancelled.
    pub async fn watch(self, stop: CancellationToken) {
        use notify::Watcher;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access() && e.paths.iter().any(|p| is_rule_path(p))) {
                let _ = tx.send(());
            }
        });
        let _watcher = match watcher.and_then(|mut w| {
            w.watch(&self.dir, notify::RecursiveMode::Recursive)
                .map(|_| w)
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch the config folder; reload with SIGHUP or /admin/reload");
                None
            }
        };
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let (trigger, only_if_changed) = tokio::select! {
                Some(()) = rx.recv() => {
                    // Let the editor finish writing, then treat everything since as one change.
                    tokio::time::sleep(RELOAD_SETTLE).await;
                    while rx.try_recv().is_ok() {}
                    ("file change", true)
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => ("SIGHUP", false),
                _ = stop.cancelled() => return,
            };
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.reload_now(trigger, only_if_changed))
                .await;
        }
    }
}

/// Whether a change at `path` may change the rules: `rules.toml`, anything under `rules.d`, or the `..data`
/// link Kubernetes swaps when a ConfigMap changes. Other files (a store kept in the config folder, editor
/// swap files) cause no reload.
fn is_rule_path(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == RULES_FILE
        || name.starts_with("..")
        || path.components().any(|c| c.as_os_str() == RULES_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(rules: &str) -> (tempfile::TempDir, Reloader) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RULES_FILE), rules).unwrap();
        let live = LiveRules::new(super::super::load(dir.path()).unwrap());
        let reloader = Reloader::new(dir.path().to_path_buf(), live);
        (dir, reloader)
    }

    const ONE_RULE: &str = "[defaults]\naction = \"seen\"\n[[rules]]\nname = \"a\"\nchat_types = [\"group\"]\naction = \"ignore\"\n";

    #[tokio::test]
    async fn a_good_edit_is_swapped_in_and_a_broken_one_keeps_the_running_rules() {
        let (dir, reloader) = folder("[defaults]\naction = \"seen\"\n");
        std::fs::write(dir.path().join(RULES_FILE), ONE_RULE).unwrap();
        assert_eq!(reloader.reload("test").await.unwrap(), 1);

        std::fs::write(dir.path().join(RULES_FILE), "[[rules]]\nname = 3\n").unwrap();
        let err = reloader.reload("test").await.unwrap_err();

        assert!(err.to_string().contains(RULES_FILE), "{err}");
        assert_eq!(reloader.live.get().len(), 1);
        let report = reloader
            .last_report()
            .expect("a report of the refused reload");
        let problems = report.result.expect_err("the refusal is reported");
        assert_eq!(
            (problems[0].line, report.trigger.as_str()),
            (Some(2), "test")
        );
    }

    #[test]
    fn unchanged_files_cause_no_reload_when_asked_only_for_changes() {
        let (dir, reloader) = folder(ONE_RULE);
        assert_eq!(reloader.reload_now("test", true).unwrap(), None);
        std::fs::write(
            dir.path().join(RULES_FILE),
            "[defaults]\naction = \"seen\"\n",
        )
        .unwrap();
        assert_eq!(reloader.reload_now("test", true).unwrap(), Some(0));
    }

    #[test]
    fn removing_a_refused_file_reports_the_running_rules_again() {
        let (dir, reloader) = folder(ONE_RULE);
        let extra = dir.path().join(RULES_DIR);
        std::fs::create_dir(&extra).unwrap();
        std::fs::write(extra.join("broken.toml"), "[[rules]]\nname = 3\n").unwrap();
        assert!(reloader.reload_now("watch", true).is_err());
        assert!(reloader.last_report().unwrap().result.is_err());

        std::fs::remove_file(extra.join("broken.toml")).unwrap();

        assert_eq!(reloader.reload_now("watch", true).unwrap(), Some(1));
        assert_eq!(reloader.last_report().unwrap().result.unwrap(), 1);
        assert_eq!(
            reloader.reload_now("watch", true).unwrap(),
            None,
            "reported once"
        );
    }

    #[test]
    fn only_rule_files_and_configmap_links_count_as_rule_changes() {
        assert!(is_rule_path(Path::new("/c/rules.toml")));
        assert!(is_rule_path(Path::new("/c/rules.d/10-vip.toml")));
        assert!(is_rule_path(Path::new("/c/..data")));
        assert!(!is_rule_path(Path::new("/c/autoseen.db-wal")));
        assert!(!is_rule_path(Path::new("/c/.rules.toml.swp")));
    }
}
