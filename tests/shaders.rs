//! Every WGSL variant the crate can generate parses and validates with naga: no GPU needed.

#[test]
fn every_generated_shader_validates() {
    let variants = wgrad::wgsl_variants().expect("every listed variant has a source");
    assert!(variants.len() > 100, "only {} variants", variants.len());
    let mut failures = Vec::new();
    for (label, source) in &variants {
        let module = match naga::front::wgsl::parse_str(source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!(
                    "{label}: parse error: {}",
                    e.emit_to_string(source)
                ));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        if let Err(e) = validator.validate(&module) {
            failures.push(format!("{label}: invalid: {}", e.emit_to_string(source)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} shaders failed:\n{}",
        failures.len(),
        variants.len(),
        failures.join("\n")
    );
}
