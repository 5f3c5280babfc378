//! `bloomlink evaluate`: precision, recall and F1 of links against a truth file, as JSON.

use super::EvaluateArgs;
use crate::error::Result;
use crate::hub::evaluate::{evaluate_columns, read_link_columns};

/// Run `evaluate`.
pub fn run(a: EvaluateArgs) -> Result<()> {
    let (links, dedup) = read_link_columns(&a.links)?;
    let e = evaluate_columns(&links, dedup, &a.truth)?;
    println!("{}", serde_json::to_string_pretty(&e).expect("json"));
    Ok(())
}
