//! Any text given to the CSV reader gives a table or an Err; a table's conversions never
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(table) = wgrad::data::Table::parse_csv(text, "fuzz") {
        let _ = table.clone().fill_na_mean().get_dummies(true).to_tensor();
    }
});
