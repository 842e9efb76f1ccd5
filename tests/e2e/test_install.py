"""The Python client as an installable package (clients/python/pyproject.toml): pip installs it
offline (`--no-index`) into a fresh `python3 -m venv --system-site-packages`, the installed
package carries its type information (py.typed, annotated signatures), and the client tests
(test_client.py) pass against the installed package rather than the tree's clients/python.

Run from tests/e2e: RELUREGD=../../build/reluregd python3 -m unittest -v test_install
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import harness

PYTHON = "/usr/bin/python3"


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="relureg-venv-")
        # A copy of clients/python, so that the build's own files (build/, *.egg-info) do not
        # land in the tree; the command is the one clients/python/README.md gives.
        cls.src = os.path.join(cls.dir, "python")
        shutil.copytree(os.path.join(harness.ROOT, "clients", "python"), cls.src,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        cls.venv = os.path.join(cls.dir, "venv")
        subprocess.run([PYTHON, "-m", "venv", "--system-site-packages", cls.venv], check=True,
                       timeout=120)
        cls.py = os.path.join(cls.venv, "bin", "python")
        env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.pop("PYTHONPATH", None)
        cls.pip = subprocess.run([cls.py, "-m", "pip", "install", "--no-index", cls.src],
                                 capture_output=True, text=True, timeout=300, env=env,
                                 cwd=cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def run_py(self, code, cwd=None, env=None):
        e = dict(os.environ, **(env or {}))
        e.pop("PYTHONPATH", None)
        return subprocess.run([self.py, "-c", code], capture_output=True, text=True,
                              timeout=600, cwd=cwd or self.dir, env=e)

    def test_pip_installs_offline(self):
        self.assertEqual(self.pip.returncode, 0, self.pip.stdout + self.pip.stderr)
        self.assertIn("Successfully installed relureg", self.pip.stdout)

    def test_installed_package_is_typed(self):
        self.assertEqual(self.pip.returncode, 0, self.pip.stderr)
        out = self.run_py(
            "import os, sys, inspect, relureg\n"
            "d = os.path.dirname(relureg.__file__)\n"
            "assert d.startswith(sys.prefix), d\n"
            "assert os.path.exists(os.path.join(d, 'py.typed'))\n"
            "sig = inspect.signature(relureg.Client.regularizers)\n"
            "assert sig.return_annotation != inspect.Signature.empty\n"
            "assert sig.parameters['name'].annotation == 'str', sig\n"
            "assert inspect.signature(relureg.export).parameters['input_shape'].annotation != "
            "inspect.Signature.empty\n"
            "net, arch, meta = relureg.load(relureg.export(__import__('torch').nn.Sequential("
            "__import__('torch').nn.Linear(3, 2)), [3]))\n"
            "print(d)\n")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(self.venv, out.stdout)

    def test_client_tests_pass_against_the_installed_package(self):
        self.assertEqual(self.pip.returncode, 0, self.pip.stderr)
        out = self.run_py(
            "import os, sys, unittest\n"
            "import harness, relureg\n"
            "assert harness.INSTALLED\n"
            "assert relureg.__file__.startswith(sys.prefix), relureg.__file__\n"
            "r = unittest.main(module='test_client', argv=['test_client'], exit=False)\n"
            "sys.exit(0 if r.result.wasSuccessful() and r.result.testsRun > 20 else 1)\n",
            cwd=harness.HERE, env={"RELUREG_INSTALLED": "1"})
        self.assertEqual(out.returncode, 0, out.stdout[-3000:] + out.stderr[-3000:])


if __name__ == "__main__":
    unittest.main()
