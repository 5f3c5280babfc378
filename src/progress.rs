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

/// `f()`, with how long it took logged as the stage `what`: at info level
/// (a command's stages, shown by `-v`), or at debug level when `detail`
/// (parts of a stage, shown by `-vv`).
pub fn timed<T>(what: &str, detail: bool, f: impl FnOnce() -> T) -> T {
    let clock = std::time::Instant::now();
    let t = f();
    let secs = clock.elapsed().as_secs_f64();
    if detail {
        tracing::debug!("{what}: {secs:.2}s");
    } else {
        tracing::info!("{what}: {secs:.2}s");
    }
    t
}
