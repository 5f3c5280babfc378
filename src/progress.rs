//! Progress bars on stderr for long work; hidden when stderr is not a
//! terminal or when the user asked for quiet output.

use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Turn all progress bars off (for `-q`).
pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

fn target(enabled: bool) -> ProgressDrawTarget {
    if enabled && !QUIET.load(Ordering::Relaxed) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A row counter with an unknown total.
pub fn rows_bar(enabled: bool, what: &str) -> ProgressBar {
    let b = ProgressBar::with_draw_target(None, target(enabled));
    b.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {human_pos} rows ({per_sec}) {elapsed}")
            .expect("valid template"),
    );
    b.set_message(what.to_string());
    b
}

/// A spinner for work measured in stages, not rows.
pub fn spinner(enabled: bool, what: &str) -> ProgressBar {
    let b = ProgressBar::with_draw_target(None, target(enabled));
    b.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    b.set_message(what.to_string());
    b.enable_steady_tick(std::time::Duration::from_millis(120));
    b
}
