//! Every WGSL variant the crate can generate parses and validates with naga, and naga's
//! SPIR-V writer (the one wgpu's Vulkan backend runs) takes it: no GPU needed. The writer
//! matters for kernels no CI adapter can run, such as the tensor-core matmul: naga has
//! panicked there on input its validator accepted.

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
        let info = match validator.validate(&module) {
            Ok(info) => info,
            Err(e) => {
                failures.push(format!("{label}: invalid: {}", e.emit_to_string(source)));
                continue;
            }
        };
        // As wgpu's Vulkan backend on a Vulkan 1.3 driver: SPIR-V 1.6, indices restricted.
        let options = naga::back::spv::Options {
            lang_version: (1, 6),
            bounds_check_policies: naga::proc::BoundsCheckPolicies {
                index: naga::proc::BoundsCheckPolicy::Restrict,
                buffer: naga::proc::BoundsCheckPolicy::Restrict,
                image_load: naga::proc::BoundsCheckPolicy::Restrict,
                binding_array: naga::proc::BoundsCheckPolicy::Restrict,
            },
            ..Default::default()
        };
        if let Err(e) = naga::back::spv::write_vec(&module, &info, &options, None) {
            failures.push(format!("{label}: SPIR-V writer: {e}"));
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
