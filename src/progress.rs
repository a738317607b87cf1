//! Terminal progress for long stages: a bar while stderr is a terminal, and
//! log lines that are printed either way (above the bar, or plainly when
//! the output goes to a file or a notebook). Log lines go to stderr, or to
//! stdout when the environment variable [`LOG_VAR`] is `stdout` (the
//! notebook kernel sets it, so that progress and results share one stream
//! and keep their order).

use indicatif::{ProgressBar, ProgressStyle};

/// The environment variable that sends log lines to stdout (`stdout`).
pub const LOG_VAR: &str = "VL_DISTILL_LOG";

fn to_stdout() -> bool {
    std::env::var_os(LOG_VAR).is_some_and(|v| v == "stdout")
}

/// Prints a log line where [`Progress::log`] prints it when no bar is
/// showing: stderr, or stdout when [`LOG_VAR`] is `stdout`.
pub fn log_line(line: &str) {
    if to_stdout() {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
}

/// A progress bar that may be switched off, plus log lines.
pub struct Progress {
    bar: Option<ProgressBar>,
    log: bool,
}

impl Progress {
    /// A bar of `total` units labelled `label` when `enabled`; log lines are
    /// printed when `enabled` too.
    pub fn new(total: u64, label: &str, enabled: bool) -> Self {
        let bar = enabled.then(|| {
            let pb = ProgressBar::new(total);
            pb.set_style(
                ProgressStyle::with_template(&format!(
                    "{label} {{bar:30}} {{pos}}/{{len}}  {{elapsed_precise}} eta {{eta}}  {{msg}}"
                ))
                .expect("valid template"),
            );
            pb
        });
        Progress { bar, log: enabled }
    }

    /// Advances by one unit and shows `msg` beside the bar.
    pub fn inc(&self, msg: impl Into<std::borrow::Cow<'static, str>>) {
        if let Some(pb) = &self.bar {
            pb.inc(1);
            pb.set_message(msg);
        }
    }

    /// Prints a log line (above the bar on a terminal, plainly otherwise).
    pub fn log(&self, line: &str) {
        match &self.bar {
            Some(pb) if !pb.is_hidden() => pb.println(line),
            _ if self.log && to_stdout() => println!("{line}"),
            _ if self.log => eprintln!("{line}"),
            _ => {}
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}
