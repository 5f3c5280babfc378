//! Fuzz the extract reader (the file the hub receives from agencies): any
//! bytes give an extract or an error naming the file, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

static HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    // Panics the reader turns into errors stay quiet; any other still aborts.
    HOOK.call_once(bloomlink::io::install_quiet_panic_hook);
    let path =
        std::env::temp_dir().join(format!("bloomlink-fuzz-{}.parquet", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = bloomlink::extract::read_meta(&path);
    let _ = bloomlink::extract::read_extract(&path);
});
