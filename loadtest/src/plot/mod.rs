//! `portico-load plot A.hgrm B.hgrm … -o latency.svg`: the latency-by-percentile chart
//! of one or more runs, drawn like HdrHistogram's plotter (`svg.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::hgrm;
use crate::Failure;

mod svg;

pub use svg::Series;

/// Options of `portico-load plot`.
#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// .hgrm files (HdrHistogram percentile distributions, e.g. from `run --hgrm`);
    /// each becomes one line, named after its file.
    #[arg(required = true, value_name = "HGRM")]
    pub files: Vec<PathBuf>,

    /// Where to write the SVG.
    #[arg(short = 'o', long, value_name = "SVG")]
    pub output: PathBuf,

    /// Chart title.
    #[arg(long, default_value = "Latency by percentile distribution")]
    pub title: String,
}

pub fn run(args: PlotArgs) -> Result<(), Failure> {
    let series = args
        .files
        .iter()
        .map(|path| read_series(path))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::BadInput)?;
    let chart = svg::render(&args.title, &series);
    fs::write(&args.output, chart)
        .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", args.output.display())))?;
    Ok(())
}

fn read_series(path: &Path) -> Result<Series, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let rows = hgrm::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(Series { name, rows })
}
