//! `bloomlink synth`: write synthetic agency extracts and their truth.

use super::SynthArgs;
use crate::error::{Error, Result};
use crate::synth::{Params, generate, write};

/// Run `synth`.
pub fn run(a: SynthArgs) -> Result<()> {
    if a.agencies == 0 || a.people == 0 {
        return Err(Error::Usage(
            "--people and --agencies must be at least 1".into(),
        ));
    }
    if !(0.0..=1.0).contains(&a.overlap) {
        return Err(Error::Usage("--overlap must be between 0 and 1".into()));
    }
    let mut files: Vec<String> = (0..a.agencies)
        .map(|i| format!("{}.csv", crate::synth::agency_name(i)))
        .collect();
    files.push("truth.csv".into());
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    crate::io::check_own_folder(&a.out, "synth_stats.json", &files, "synth")?;
    let start = std::time::Instant::now();
    let s = generate(&Params {
        people: a.people,
        agencies: a.agencies,
        seed: a.seed,
        overlap: a.overlap,
    });
    let paths = write(&s, &a.out, a.seed)?;
    for (i, p) in paths.iter().enumerate() {
        let name = crate::synth::agency_name(i);
        eprintln!(
            "{name:>12}: {} records -> {}",
            s.stats.records[&name],
            p.display()
        );
    }
    eprintln!(
        "{} people, truth in {} ({:.1}s)",
        a.people,
        a.out.join("truth.csv").display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
