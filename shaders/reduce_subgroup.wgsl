// Sum over each aligned group of 32 invocations (a "row group"), with subgroup operations.
// Valid on adapters whose subgroups have at most 32 lanes (32 is then a multiple of the subgroup
// size): subgroupAdd sums each subgroup, and the 32 / subgroup_size partials of a row group meet
// in workgroup memory. The result is meant for the row group's lane 0. Call from uniform control
// flow (it has barriers); workgroups of at most 128 invocations.
// Needs a device opened with wgpu's Features::SUBGROUP (Naga takes no `enable subgroups;`).

struct Ids {
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_size) sg_size: u32,
}

var<workgroup> red: array<f32, 32>;

fn row_sum(v: f32, ids: Ids) -> f32 {
    let s = subgroupAdd(v);
    if (ids.sg_lane == 0u) {
        red[ids.li / ids.sg_size] = s;
    }
    workgroupBarrier();
    let per = 32u / ids.sg_size;
    let base = (ids.li / 32u) * per;
    var t = 0.0;
    for (var i = 0u; i < per; i++) {
        t += red[base + i];
    }
    workgroupBarrier();
    return t;
}
