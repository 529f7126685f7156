/*
 * targets.c - the table of NPU targets the planner knows (evlm_npu_target_*, evlm_npu.h): each
 * SoC's Hexagon version, peak TOPS, DRAM bandwidth, VTCM, per-graph and addressable memory
 * limits and KV precision, every number with its source. A number no source found gives is
 * marked "ASSUMPTION" in its source line and in docs/NPU.md (section "Planner").
 *
 * Not here: what the planner does with them (plan.c), any measured speed (the one calibration
 * point lives in plan.c with its source).
 */
#include "npu/plan.h"

#include <string.h>
#include <strings.h>

#define GIB (1024LL * 1024 * 1024)

/* Sources, by short name (full references in docs/NPU.md):
 * [qnn-gvm]   Qualcomm AI Engine Direct (QNN) SDK docs, "Tutorial: HTP Backend on SA-series -
 *             LA GVM": libQnnHtpV68Stub for SA8295 / SA8540, libQnnHtpV73Stub for SA8650,
 *             SA8775, SA8255. https://docs.qualcomm.com/doc/80-63442-10/topic/la_gvm.html
 * [et-soc]    ExecuTorch QNN backend, backends/qualcomm/serialization/qc_schema.py (PR 6986,
 *             15987): SA8295 = HtpInfo(V68, VTCM 8 MB), SA8255 = HtpInfo(V73, VTCM 8 MB).
 * [cn-table]  SA8155P / SA8255P / SA8295P comparison table (a reproduction of Qualcomm's product
 *             table, https://e-com-net.com/article/1714844676231606272.htm): memory, NSP, TOPS.
 * [sa8775]    "Cockpit-Driving Integration: Qualcomm SA8775 Chip Technical Analysis",
 *             https://www.aiwedo.com/?p=25486: "up to 70 TOPS".
 * [issue19]   this project's issue 19 (V68: no int4 block weights, 8-bit KV cache, about 2 GB
 *             per graph; SA8255P / SA8775P are V73).
 * [aihub-exp] quic/ai-hub-models, qai_hub_models/models/_shared/llm/export.py: refuses w4a16 on
 *             chipset qualcomm-sa8295p; w4 needs htp-supports-fp16 (and is published there).
 * [aihub-100] qualcomm/ai-hub-models issue 100: LLM parts are split "because of the address
 *             space limitation of the Hexagon".
 * [powerserve] powerserve-project/PowerServe issue 6, citing the QNN HTP backend docs ("HTP
 *             session & artifact usage guidelines"): 32-bit NPU, at most 3.75 GB per session.
 */
static const evlm_npu_target_info k_targets[] = {
    {
        .name = "sa8295",
        .soc = "SA8295P",
        .hexagon = 68,
        .tops = 40.0,
        .dram_gb_s = 66.97,
        .vtcm_mib = 8.0,
        .graph_limit = 2 * GIB,
        .addressable = 3 * GIB + 3 * GIB / 4,
        .kv_bits = 8,
        .int4_block = false,
        .sources = "hexagon: V68 [qnn-gvm] [et-soc] [issue19]\n"
                   "tops: 40, the lower end of \"40~50\" [cn-table]; precision not stated "
                   "there (ASSUMPTION: 8-bit ops)\n"
                   "dram_gb_s: 8 x 16-bit LPDDR4X up to 2092.8 MHz [cn-table] = 2 x 2092.8 MT/s "
                   "x 16 B = 66.97 GB/s\n"
                   "vtcm_mib: 8 [et-soc]\n"
                   "graph_limit: about 2 GB per graph [issue19]; splits are for the Hexagon "
                   "address space [aihub-100]; the exact figure is not in the sources found "
                   "(ASSUMPTION: 2 GiB)\n"
                   "addressable: 3.75 GB per session [powerserve] (ASSUMPTION: one session per "
                   "model)\n"
                   "kv_bits: 8 [issue19]\n"
                   "int4_block: no (V68) [issue19] [aihub-exp]\n",
    },
    {
        .name = "sa8255",
        .soc = "SA8255P",
        .hexagon = 73,
        .tops = 48.0,
        .dram_gb_s = 76.8,
        .vtcm_mib = 8.0,
        .graph_limit = 2 * GIB,
        .addressable = 3 * GIB + 3 * GIB / 4,
        .kv_bits = 8,
        .int4_block = true,
        .sources = "hexagon: V73 [qnn-gvm] [et-soc] [issue19]\n"
                   "tops: 48, the top bin of \"10/15/24/32/48\" [cn-table]; precision not "
                   "stated (ASSUMPTION: 8-bit ops)\n"
                   "dram_gb_s: 6 x 16-bit LPDDR5 up to 3200 MHz [cn-table] = 6400 MT/s x 12 B "
                   "= 76.8 GB/s\n"
                   "vtcm_mib: 8 [et-soc]\n"
                   "graph_limit: not in the sources found (ASSUMPTION: 2 GiB as V68)\n"
                   "addressable: 3.75 GB per session [powerserve] (ASSUMPTION: one session)\n"
                   "kv_bits: not in the sources found (ASSUMPTION: 8, as V68)\n"
                   "int4_block: yes (V69 and later) [issue19]\n",
    },
    {
        .name = "sa8775",
        .soc = "SA8775P",
        .hexagon = 73,
        .tops = 70.0,
        .dram_gb_s = 76.8,
        .vtcm_mib = 8.0,
        .graph_limit = 2 * GIB,
        .addressable = 3 * GIB + 3 * GIB / 4,
        .kv_bits = 8,
        .int4_block = true,
        .sources = "hexagon: V73 [qnn-gvm] [issue19]\n"
                   "tops: up to 70 [sa8775] (third party; precision not stated; ASSUMPTION: "
                   "8-bit ops, both NSPs)\n"
                   "dram_gb_s: not in the sources found (ASSUMPTION: 76.8 GB/s as SA8255P)\n"
                   "vtcm_mib: not in the sources found (ASSUMPTION: 8 as the other V73 parts)\n"
                   "graph_limit: not in the sources found (ASSUMPTION: 2 GiB as V68)\n"
                   "addressable: 3.75 GB per session [powerserve] (ASSUMPTION: one session on "
                   "one NSP)\n"
                   "kv_bits: not in the sources found (ASSUMPTION: 8, as V68)\n"
                   "int4_block: yes (V69 and later) [issue19]\n",
    },
};

size_t evlm_npu_n_targets(void) {
    return sizeof k_targets / sizeof *k_targets;
}

const evlm_npu_target_info *evlm_npu_target_at(size_t i) {
    return i < evlm_npu_n_targets() ? &k_targets[i] : NULL;
}

const evlm_npu_target_info *evlm_npu_target_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < evlm_npu_n_targets(); i++) {
        const evlm_npu_target_info *t = &k_targets[i];
        if (!strcasecmp(name, t->name) || !strcasecmp(name, t->soc)) return t;
    }
    return NULL;
}
