// Shared by the kernels that give each channel of a contiguous [N, C, S] tensor a workgroup
// (`batch_norm*.wgsl`). Metadata: [0] N, [1] C, [2] S.

// Where the channel's j-th element is: the j / S-th sample's k = j % S-th.
fn at(j: u32, ch: u32) -> u32 {
    let s = params[2];
    return ((j / s) * params[1] + ch) * s + j % s;
}
