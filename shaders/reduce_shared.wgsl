// Sum over each aligned group of 32 invocations (a "row group") through a workgroup-memory tree,
// for adapters without subgroups (or with subgroups wider than 32). The result is meant for the
// row group's lane 0. Call from uniform control flow (it has barriers); workgroups of at most 128.

struct Ids {
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
}

var<workgroup> red: array<f32, 128>;

fn row_sum(v: f32, ids: Ids) -> f32 {
    let li = ids.li;
    red[li] = v;
    workgroupBarrier();
    for (var s = 16u; s > 0u; s = s >> 1u) {
        if (li % 32u < s) {
            red[li] += red[li + s];
        }
        workgroupBarrier();
    }
    let t = red[li];
    workgroupBarrier();
    return t;
}
