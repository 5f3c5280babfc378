//! `bloomlink evaluate`: precision, recall and F1 of links against a truth file, as JSON.

use super::EvaluateArgs;
use crate::error::Result;
use crate::hub::evaluate::{evaluate, read_links};

/// Run `evaluate`.
pub fn run(a: EvaluateArgs) -> Result<()> {
    let (rows, dedup) = read_links(&a.links)?;
    let e = evaluate(&rows, dedup, &a.truth)?;
    println!("{}", serde_json::to_string_pretty(&e).expect("json"));
    Ok(())
}
