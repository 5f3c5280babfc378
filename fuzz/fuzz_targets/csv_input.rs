//! Fuzz the agency input reader on CSV bytes: every row is read, every cell
//! classified (text, null, bad UTF-8, absent), or a clear error; no panic.
//! The first byte picks the encoding (UTF-8 or Windows-1252) and the
//! separator (`,` or `;`).
#![no_main]
use bloomlink::agency::input::{Chunk, CsvFormat, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&how, data)) = data.split_first() else {
        return;
    };
    let csv = CsvFormat {
        delimiter: (how & 1 == 1).then_some(b';'),
        encoding: if how & 2 == 2 {
            encoding_rs::WINDOWS_1252
        } else {
            encoding_rs::UTF_8
        },
    };
    let path = std::env::temp_dir().join(format!("bloomlink-fuzz-{}.csv", std::process::id()));
    std::fs::write(&path, data).unwrap();
    if let Ok(mut input) = Input::open(&path, 64, csv) {
        let used: Vec<usize> = (0..input.header().len()).collect();
        let mut chunk = Chunk::Csv(Default::default());
        while let Ok(true) = input.next_chunk(64, &mut chunk, &used) {
            for r in 0..chunk.len() {
                let _ = chunk.cells(r);
                for &c in &used {
                    let _ = chunk.cell(r, c);
                }
            }
        }
    }
});
