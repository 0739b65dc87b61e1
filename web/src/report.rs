//! The report of a run (`patchcord-recv --report STATS.jsonl -o report.html`, the same
//! on `patchcord-send`): the dashboard page with the records of a `--stats-json` file
//! written into it, so that one self-contained HTML file shows the run that happened
//! unattended with the same plots as the live page; it loads nothing, from anywhere.
//!
//! A long run is thinned to at most [`MAX_RECORDS`] records (every k-th, and always the
//! final summary), so that the page stays small enough to open: a day at one record a
//! second becomes one record every five seconds.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};

use crate::server::DASHBOARD_HTML;

/// Most records written into a report.
pub const MAX_RECORDS: usize = 20_000;

/// Where the records go in the page.
const MARKER: &str = "<!--RECORDS-->";

/// Write the report of the stats file `input` to `output`; returns how many records it
/// holds.
pub fn write(input: &str, output: &str) -> Result<usize, String> {
    let open = || {
        File::open(input)
            .map(BufReader::new)
            .map_err(|e| format!("--report: cannot read '{input}': {e}"))
    };
    let lines = open()?.lines().count();
    let stride = lines.div_ceil(MAX_RECORDS).max(1);
    let mut records = Vec::new();
    let mut skipped = 0usize;
    for (i, line) in open()?.lines().enumerate() {
        let line = line.map_err(|e| format!("--report: cannot read '{input}': {e}"))?;
        if i % stride != 0 && i + 1 != lines {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) if v.is_object() => records.push(v.to_string()),
            _ => skipped += 1,
        }
    }
    if records.is_empty() {
        return Err(format!(
            "--report: '{input}' holds no stats records (JSON lines written by --stats-json)"
        ));
    }
    if skipped > 0 {
        say!("--report: {skipped} lines of '{input}' are not stats records; left out");
    }
    // "</" would end the script element early
    let data = format!(
        "<script>window.PATCHCORD_RECORDS = [{}];</script>",
        records.join(",\n").replace("</", "<\\/")
    );
    let page = DASHBOARD_HTML.replacen(MARKER, &data, 1);
    File::create(output)
        .and_then(|mut f| f.write_all(page.as_bytes()))
        .map_err(|e| format!("--report: cannot write '{output}': {e}"))?;
    Ok(records.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_embedded_and_thinned() {
        let dir = std::env::temp_dir().join(format!("patchcord-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("s.jsonl");
        let mut text = String::new();
        for t in 0..(MAX_RECORDS + 10) {
            text.push_str(&format!("{{\"t\":{t},\"note\":\"</script>\"}}\n"));
        }
        text.push_str("not json\n{\"t\":-1,\"final\":true}\n");
        std::fs::write(&input, text).unwrap();
        let out = dir.join("r.html");
        let n = write(input.to_str().unwrap(), out.to_str().unwrap()).unwrap();
        assert!(n <= MAX_RECORDS && n > MAX_RECORDS / 3, "{n}");
        let page = std::fs::read_to_string(&out).unwrap();
        assert!(page.contains("window.PATCHCORD_RECORDS = [{\"note\":\"<\\/script>\",\"t\":0}"));
        assert!(
            page.contains("{\"final\":true,\"t\":-1}]"),
            "the final record is kept"
        );
        assert!(!page.contains(MARKER));
        assert!(
            write(out.to_str().unwrap(), out.to_str().unwrap()).is_err(),
            "no records in HTML"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
