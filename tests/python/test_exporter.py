"""The PyTorch exporter: round trips through export/load for every layer type, and each
construct the model format cannot express is refused with a message naming the module."""
import json
import os
import sys
import unittest
import warnings

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python"))
import relureg  # noqa: E402
from relureg import Residual, export, load, safetensors  # noqa: E402


def every_layer():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3),
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        Residual(nn.Sequential(nn.Conv2d(4, 4, (3, 1), padding=(1, 0), bias=False), nn.LeakyReLU(0.2),
                               Residual(nn.Sequential(nn.Identity(), nn.Conv2d(4, 4, 1))))),
        nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False), nn.Flatten(),
        nn.Linear(16, 8), nn.BatchNorm1d(8, affine=False, eps=1e-3), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return net.eval()


class RoundTrip(unittest.TestCase):
    def test_every_layer_type_round_trips(self):
        net = every_layer()
        data = export(net, [2, 7, 7], input_range=[0, 1], class_names=["a", "b", "c"],
                      metadata={"note": "x"})
        back, arch, meta = load(data)
        x = torch.rand(5, 2, 7, 7, dtype=torch.float64)
        self.assertTrue(torch.allclose(back(x), net.double()(x), rtol=0, atol=1e-12))
        self.assertEqual(meta["note"], "x")
        self.assertEqual(arch["input_range"], [0.0, 1.0])
        types = [l["type"] for l in arch["layers"]]
        self.assertEqual(types, ["conv2d", "batchnorm", "relu", "maxpool2d", "residual",
                                 "avgpool2d", "flatten", "linear", "batchnorm", "relu", "linear"])
        inner = arch["layers"][4]["layers"]
        self.assertEqual(inner[0]["name"], "5.body.0")
        self.assertEqual(inner[2]["layers"][0]["name"], "5.body.2.body.1")
        # Dropout (index 3) is dropped but indices keep their numbers.
        self.assertEqual(arch["layers"][7]["name"], "8")
        tensors, _ = safetensors.load(data)
        self.assertEqual(tensors["1.num_batches_tracked"].dtype, torch.int64)
        self.assertEqual(tensors["1.num_batches_tracked"].shape, torch.Size([]))
        self.assertEqual(set(tensors), set(net.state_dict()))

    def test_weight_dtypes(self):
        net = every_layer()
        for name, dt in [("F64", torch.float64), ("F16", torch.float16), ("BF16", torch.bfloat16)]:
            tensors, _ = safetensors.load(export(net, [2, 7, 7], dtype=name))
            self.assertEqual(tensors["0.weight"].dtype, dt)
            self.assertTrue(torch.equal(tensors["0.weight"], net.state_dict()["0.weight"].to(dt)))

    def test_header_layout(self):
        data = export(every_layer(), [2, 7, 7])
        n = int.from_bytes(data[:8], "little")
        self.assertEqual((8 + n) % 8, 0, "header padded to a multiple of 8")
        header = json.loads(data[8:8 + n])
        self.assertIn("relureg.architecture", header["__metadata__"])


class Rejections(unittest.TestCase):
    def check(self, net, shape, needle, exc=ValueError):
        with self.assertRaises(exc) as cm:
            export(net, shape)
        self.assertIn(needle, str(cm.exception))

    def test_rejects_what_the_format_cannot_express(self):
        self.check(nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2)), [1, 8, 8], "0: Conv2d dilation")
        self.check(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), [2, 8, 8], "groups=2")
        self.check(nn.Sequential(nn.Conv2d(1, 1, 3, padding="same")), [1, 8, 8], "padding='same'")
        self.check(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")),
                   [1, 8, 8], "padding_mode='reflect'")
        self.check(nn.Sequential(nn.MaxPool2d(2, dilation=2)), [1, 8, 8], "MaxPool2d dilation")
        self.check(nn.Sequential(nn.MaxPool2d(2, return_indices=True)), [1, 8, 8], "return_indices")
        self.check(nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), [1, 8, 8], "divisor_override")
        self.check(nn.Sequential(nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 2)),
                   [4], "track_running_stats=False")
        self.check(nn.Sequential(nn.Linear(4, 2), nn.Sigmoid()), [4], "1: Sigmoid is not supported")
        self.check(nn.Sequential(nn.Linear(12, 2)), [3, 2, 2], "add nn.Flatten()")
        self.check(nn.Sequential(nn.Flatten(0), nn.Linear(4, 2)), [4], "start_dim=0")
        self.check(nn.Sequential(Residual(nn.Sequential(nn.Linear(4, 3)))), [4],
                   "Residual body maps [4] to [3]")
        self.check(nn.Linear(4, 2), [4], "torch.nn.Sequential", TypeError)
        self.check(nn.Sequential(nn.Sequential(nn.Linear(4, 2))), [4], "nested nn.Sequential")

    def test_final_softmax_is_refused_with_the_advice_to_drop_it(self):
        for layer, kind in ((nn.Softmax(dim=1), "Softmax"), (nn.LogSoftmax(dim=1), "LogSoftmax")):
            with self.subTest(kind=kind):
                self.check(nn.Sequential(nn.Linear(4, 3), layer), [4],
                           f"1: {kind} is not supported: drop it")
                self.check(nn.Sequential(nn.Linear(4, 3), layer), [4],
                           "applies the softmax itself")

    def test_wrong_input_shape_names_the_shape(self):
        mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        self.check(mlp, [100], "1: Linear expects 784 input features but receives 100 with "
                   "input_shape [100]")
        self.check(nn.Sequential(nn.Linear(784, 10)), [1, 28, 28], "input_shape [1, 28, 28]")
        cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
        self.check(cnn, [3, 28, 28], "0: Conv2d expects 1 input channels but receives 3")
        self.check(cnn, [1, 32, 32], "3: Linear expects 2704 input features but receives 3600 "
                   "with input_shape [1, 32, 32]")
        self.check(cnn, [1, 2, 2], "0: Conv2d cannot take its input of shape [1, 2, 2]")
        self.check(cnn, [28, 28], "input_shape [28, 28] must be one sample's shape")
        self.check(cnn, [0, 28, 28], "without the batch dimension")

    def test_dropout_is_left_out_with_a_warning(self):
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
        with self.assertWarns(relureg.DropoutDropped) as cm:
            data = export(net, [4])
        self.assertIn("2: Dropout is left out", str(cm.warning))
        self.assertIn("eval mode", str(cm.warning))
        back, arch, meta = load(data)
        self.assertEqual([l["type"] for l in arch["layers"]], ["linear", "relu", "linear"])
        x = torch.rand(3, 4, dtype=torch.float64)
        self.assertTrue(torch.allclose(back(x), net.eval().double()(x), rtol=0, atol=1e-12))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning without Dropout
            export(nn.Sequential(nn.Identity(), nn.Linear(4, 2)), [4])

    def test_num_classes_and_class_names_must_match(self):
        net = nn.Sequential(nn.Linear(4, 3))
        with self.assertRaises(ValueError):
            export(net, [4], num_classes=4)
        with self.assertRaises(ValueError):
            export(net, [4], class_names=["a"])

    def test_safetensors_reader_rejects_overlaps(self):
        data = bytearray(safetensors.save({"a": torch.zeros(2), "b": torch.zeros(2)}))
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        header["b"]["data_offsets"] = [0, 8]
        h = json.dumps(header).encode()
        h += b" " * (-(8 + len(h)) % 8)
        bad = len(h).to_bytes(8, "little") + h + bytes(data[8 + n:])
        with self.assertRaises(ValueError):
            safetensors.load(bad)


if __name__ == "__main__":
    unittest.main()
