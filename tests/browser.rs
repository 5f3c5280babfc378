//! The HTML report in a real browser: headless Chromium loads it from disk
//! with the network off, reports no console error, renders the charts and
//! takes a screenshot. Skipped (and said so) when Chromium is not installed,
//! unless BLOOMLINK_REQUIRE_BROWSER=1 (set by .ci/run, which installs it).

use std::path::PathBuf;
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(o) = Command::new("which").arg(c).output()
            && o.status.success()
        {
            return Some(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        }
    }
    None
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        if std::env::var("BLOOMLINK_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("BLOOMLINK_REQUIRE_BROWSER=1 but no chromium is installed");
        }
        eprintln!("SKIPPED report_renders_in_headless_chromium: chromium is not installed");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let o = bloomlink::cli::demo::run_demo(d.path(), 1500, 3, 7, false).unwrap();
    let url = format!("file://{}", o.report.display());
    let shot = d.path().join("report.png");
    let profile = d.path().join("profile");
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let dom = Command::new(&browser)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert!(dom.status.success(), "chromium failed: {stderr}");
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains("Linkage quality report"),
        "the page did not load"
    );
    assert!(
        html.contains("<svg"),
        "charts missing from the rendered DOM"
    );
    for bad in ["Uncaught", "CONSOLE(", "Failed to load resource", "ERR_"] {
        assert!(!stderr.contains(bad), "browser reported `{bad}`: {stderr}");
    }
    let s = Command::new(&browser)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1200,2400", &url])
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "screenshot suspiciously small: {} bytes",
        png.len()
    );
    if let Ok(dir) = std::env::var("BLOOMLINK_SCREENSHOT_DIR") {
        std::fs::copy(&shot, PathBuf::from(dir).join("report.png")).unwrap();
    }
}
