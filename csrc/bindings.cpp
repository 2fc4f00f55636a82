#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_packing(py::module_& m);  // csrc/packing.cpp

PYBIND11_MODULE(_C, m) {
  m.doc() = "oreal-mega C++ helpers";
  register_packing(m);
}
