// Every layer type and option, forward and both backward directions (input and parameters)
// plus forward tangents, against the naive float64 implementation and central finite
// differences inside linear regions (check_model.h states the tolerances).
#include <criterion/criterion.h>

#include "check_model.h"

#define ARCH(shape, K, layers)                                                                     \
    "{\"format\": \"relureg/1\", \"input_shape\": " shape ", \"num_classes\": " #K                 \
    ", \"layers\": [" layers "]}"

static void check(const char *arch, uint64_t seed)
{
    rr_check_opts o = {.seed = seed};
    size_t n = rr_check_model(arch, &o);
    cr_expect(n > 0, "no parameter gradient was checked");
}

Test(linear, forward_vjp_jvp_match_finite_differences)
{
    check(ARCH("[5]", 3,
               "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 5, "
               "\"out_features\": 3}"),
          1);
}

Test(linear, without_bias)
{
    check(ARCH("[4]", 2,
               "{\"type\": \"linear\", \"name\": \"fc\", \"in_features\": 4, "
               "\"out_features\": 2, \"bias\": false}"),
          2);
}

Test(relu, mlp_masks_match)
{
    check(ARCH("[6]", 4,
               "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 6, \"out_features\": 8},"
               "{\"type\": \"relu\"},"
               "{\"type\": \"linear\", \"name\": \"2\", \"in_features\": 8, \"out_features\": 4}"),
          3);
}

Test(relu, leaky_slopes)
{
    check(ARCH("[6]", 3,
               "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 6, \"out_features\": 7},"
               "{\"type\": \"leaky_relu\", \"negative_slope\": 0.2},"
               "{\"type\": \"linear\", \"name\": \"2\", \"in_features\": 7, \"out_features\": 5},"
               "{\"type\": \"leaky_relu\"},"
               "{\"type\": \"linear\", \"name\": \"4\", \"in_features\": 5, \"out_features\": 3}"),
          4);
}

#define HEAD(n, K)                                                                                 \
    "{\"type\": \"flatten\"}, {\"type\": \"linear\", \"name\": \"head\", \"in_features\": " #n     \
    ", \"out_features\": " #K "}"

Test(conv2d, same_padding_3x3)
{
    check(ARCH("[2, 5, 6]", 3,
               "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 2, \"out_channels\": 3, "
               "\"kernel_size\": [3, 3], \"padding\": [1, 1]}, {\"type\": \"relu\"}," HEAD(90, 3)),
          5);
}

Test(conv2d, non_square_kernel_stride_padding_no_bias)
{
    // H: (7 + 2 - 3)/2 + 1 = 4, W: (6 + 0 - 2)/1 + 1 = 5
    check(ARCH("[1, 7, 6]", 2,
               "{\"type\": \"conv2d\", \"name\": \"c\", \"in_channels\": 1, \"out_channels\": 2, "
               "\"kernel_size\": [3, 2], \"stride\": [2, 1], \"padding\": [1, 0], "
               "\"bias\": false}," HEAD(40, 2)),
          6);
}

Test(conv2d, kernel5_stride2_pad2_then_1x1)
{
    // (9 + 4 - 5)/2 + 1 = 5
    check(ARCH("[2, 9, 9]", 4,
               "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 2, \"out_channels\": 3, "
               "\"kernel_size\": 5, \"stride\": 2, \"padding\": 2},"
               "{\"type\": \"leaky_relu\", \"negative_slope\": 0.1},"
               "{\"type\": \"conv2d\", \"name\": \"2\", \"in_channels\": 3, \"out_channels\": 2, "
               "\"kernel_size\": 1}," HEAD(50, 4)),
          7);
}

Test(maxpool2d, kernel2_after_relu)
{
    check(ARCH("[2, 6, 6]", 3,
               "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 2, \"out_channels\": 2, "
               "\"kernel_size\": 3, \"padding\": 1}, {\"type\": \"relu\"},"
               "{\"type\": \"maxpool2d\", \"kernel_size\": 2}," HEAD(18, 3)),
          8);
}

Test(maxpool2d, overlapping_padded_ceil_mode)
{
    // H = 7: ceil((7 + 2 - 3)/2) + 1 = 4; W = 8: ceil((8 + 2 - 3)/2) + 1 = 5, and the last
    // window starts at 8 - 1 = 7 < 8 + 1, so it is kept.
    check(ARCH("[1, 7, 8]", 3,
               "{\"type\": \"maxpool2d\", \"kernel_size\": 3, \"stride\": 2, \"padding\": 1, "
               "\"ceil_mode\": true}," HEAD(20, 3)),
          9);
}

Test(maxpool2d, stride1_overlap)
{
    check(ARCH("[2, 5, 5]", 2,
               "{\"type\": \"maxpool2d\", \"kernel_size\": [3, 2], \"stride\": 1}," HEAD(24, 2)),
          10);
}

Test(avgpool2d, plain)
{
    check(ARCH("[2, 6, 4]", 3, "{\"type\": \"avgpool2d\", \"kernel_size\": 2}," HEAD(12, 3)), 11);
}

Test(avgpool2d, ceil_mode_padding_count_include_pad)
{
    check(ARCH("[1, 7, 7]", 3,
               "{\"type\": \"avgpool2d\", \"kernel_size\": 3, \"stride\": 2, \"padding\": 1, "
               "\"ceil_mode\": true, \"count_include_pad\": true}," HEAD(16, 3)),
          12);
}

Test(avgpool2d, ceil_mode_exclude_pad)
{
    check(ARCH("[2, 6, 5]", 2,
               "{\"type\": \"avgpool2d\", \"kernel_size\": 3, \"stride\": 2, \"padding\": 1, "
               "\"ceil_mode\": true, \"count_include_pad\": false}," HEAD(24, 2)),
          13);
}

Test(batchnorm, per_channel_affine)
{
    check(ARCH("[3, 4, 4]", 3,
               "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 3, \"out_channels\": 2, "
               "\"kernel_size\": 3, \"padding\": 1},"
               "{\"type\": \"batchnorm\", \"name\": \"1\", \"num_features\": 2},"
               "{\"type\": \"relu\"}," HEAD(32, 3)),
          14);
}

Test(batchnorm, vector_without_affine_custom_eps)
{
    check(ARCH("[5]", 3,
               "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 5, \"out_features\": 6},"
               "{\"type\": \"batchnorm\", \"name\": \"bn\", \"num_features\": 6, \"eps\": 0.001, "
               "\"affine\": false},"
               "{\"type\": \"relu\"},"
               "{\"type\": \"linear\", \"name\": \"3\", \"in_features\": 6, \"out_features\": 3}"),
          15);
}

Test(residual, conv_block)
{
    check(ARCH("[2, 5, 5]", 3,
               "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 2, \"out_channels\": 3, "
               "\"kernel_size\": 3, \"padding\": 1}, {\"type\": \"relu\"},"
               "{\"type\": \"residual\", \"layers\": ["
               "{\"type\": \"conv2d\", \"name\": \"2.body.0\", \"in_channels\": 3, "
               "\"out_channels\": 3, \"kernel_size\": 3, \"padding\": 1},"
               "{\"type\": \"batchnorm\", \"name\": \"2.body.1\", \"num_features\": 3},"
               "{\"type\": \"relu\"},"
               "{\"type\": \"conv2d\", \"name\": \"2.body.3\", \"in_channels\": 3, "
               "\"out_channels\": 3, \"kernel_size\": 3, \"padding\": 1}]},"
               "{\"type\": \"relu\"}," HEAD(75, 3)),
          16);
}

Test(residual, nested_mlp_blocks)
{
    check(ARCH("[4]", 3,
               "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 4, \"out_features\": 6},"
               "{\"type\": \"residual\", \"layers\": ["
               "{\"type\": \"relu\"},"
               "{\"type\": \"linear\", \"name\": \"1.body.1\", \"in_features\": 6, "
               "\"out_features\": 6},"
               "{\"type\": \"residual\", \"layers\": ["
               "{\"type\": \"leaky_relu\", \"negative_slope\": 0.3},"
               "{\"type\": \"linear\", \"name\": \"1.body.2.body.1\", \"in_features\": 6, "
               "\"out_features\": 6}]}]},"
               "{\"type\": \"relu\"},"
               "{\"type\": \"linear\", \"name\": \"3\", \"in_features\": 6, \"out_features\": 3}"),
          17);
}

Test(flatten, on_a_vector_is_identity)
{
    check(ARCH("[5]", 2,
               "{\"type\": \"flatten\"},"
               "{\"type\": \"linear\", \"name\": \"1\", \"in_features\": 5, \"out_features\": 2}"),
          18);
}

static const char *small_cnn =
    ARCH("[2, 6, 6]", 4,
         "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 2, \"out_channels\": 3, "
         "\"kernel_size\": 3, \"padding\": 1}, {\"type\": \"relu\"},"
         "{\"type\": \"maxpool2d\", \"kernel_size\": 2},"
         "{\"type\": \"batchnorm\", \"name\": \"3\", \"num_features\": 3},"
         "{\"type\": \"avgpool2d\", \"kernel_size\": 2, \"ceil_mode\": true}," HEAD(12, 4));

Test(weights, f16_bf16_f64_storage)
{
    rr_dtype dts[] = {RR_DTYPE_F16, RR_DTYPE_BF16, RR_DTYPE_F64};
    for (int i = 0; i < 3; i++) {
        rr_check_opts o = {.seed = 30 + i, .dtype = dts[i]};
        cr_expect(rr_check_model(small_cnn, &o) > 0);
    }
}

Test(workspace, small_budget_chunks_the_batch)
{
    // A budget of a few samples splits the batch into chunks (and conv GEMMs into pieces).
    rr_check_opts ok = {.seed = 41, .B = 5, .budget = 200000};
    cr_expect(rr_check_model(small_cnn, &ok) > 0);
}
