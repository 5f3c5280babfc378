//! Fuzz the clkhash v3 JSON schema parser: any text gives a schema or an
//! error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(s) =
            bloomlink::agency::schema::Schema::from_clkhash_json(text, "fuzz.json".as_ref())
        {
            let _ = s.fingerprint();
        }
    }
});
