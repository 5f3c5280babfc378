//! Fuzz the agency input reader on CSV bytes: every row is read, every cell
//! classified (text, null, bad UTF-8, absent), or a clear error; no panic.
#![no_main]
use bloomlink::agency::input::{Chunk, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("bloomlink-fuzz-{}.csv", std::process::id()));
    std::fs::write(&path, data).unwrap();
    if let Ok(mut input) = Input::open(&path, 64) {
        let used: Vec<usize> = (0..input.header().len()).collect();
        let mut chunk = Chunk::Csv(Vec::new(), 0);
        while let Ok(true) = input.next_chunk(64, &mut chunk, &used) {
            for r in 0..chunk.len() {
                for &c in &used {
                    let _ = chunk.cell(r, c);
                }
            }
        }
    }
});
