// The C++ side of check_install.sh: <relureg.h> compiles as C++11 with every warning an error
// (extern "C" in every public header), and calls link against librelureg by their C names.
#include <relureg.h>

#include <cstdio>
#include <cstring>
#include <vector>

namespace
{

bool never(void *)
{
    return false;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2 || std::strcmp(rr_version(), argv[1]) != 0 ||
        std::strcmp(rr_version(), RR_VERSION) != 0) {
        std::fprintf(stderr, "consumer.cpp: version %s, expected %s\n", rr_version(),
                     argc > 1 ? argv[1] : "?");
        return 1;
    }
    rr_error err = rr_error();
    rr_model *m = nullptr;
    const char *arch = "{\"format\": \"relureg/1\", \"input_shape\": [2], \"num_classes\": 2, "
                       "\"layers\": [{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 2, "
                       "\"out_features\": 2}]}";
    if (rr_model_create(arch, &m, &err) != RR_OK || rr_model_init(m, 7, &err) != RR_OK) {
        std::fprintf(stderr, "consumer.cpp: %s\n", err.msg);
        return 1;
    }
    rr_workspace_params wp = rr_workspace_params();
    wp.max_batch = 1;
    wp.rows_per_sample = 2;
    rr_workspace *ws = nullptr;
    std::vector<float> x = {0.5f, -0.5f};
    std::vector<int64_t> y = {1};
    rr_reg_spec spec = rr_reg_spec();
    spec.name = RR_REG_INPUT_GRADIENT;
    rr_reg_params p = rr_reg_params();
    p.regs = &spec;
    p.nregs = 1;
    p.control.abort = never;
    rr_reg_result r = rr_reg_result();
    const rr_status st = rr_workspace_new(m, &wp, &ws, &err) == RR_OK
                             ? rr_reg_compute(m, ws, x.data(), y.data(), 1, &p, &r, nullptr, &err)
                             : err.code;
    rr_workspace_free(ws);
    rr_model_release(m);
    if (st != RR_OK) {
        std::fprintf(stderr, "consumer.cpp: %s: %s\n", rr_status_str(st), err.msg);
        return 1;
    }
    std::printf("consumer (C++): relureg %s, input gradient %g\n", rr_version(), r.value);
    return 0;
}
