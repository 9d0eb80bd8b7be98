// instructfast._core: the only file that sees Python. Converts arguments, allocates
// the numpy outputs, then releases the GIL for the plain-C++ work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "arrow_strings.hpp"
#include "jsonstr.hpp"
#include "mtld.hpp"
#include "textstats.hpp"
#include "unicode.hpp"
#include "utf8.hpp"

#ifndef INSTRUCTFAST_VERSION
#define INSTRUCTFAST_VERSION "0+unknown"
#endif

namespace py = pybind11;
using namespace instructfast;

namespace {

// Borrows the struct inside an Arrow PyCapsule (the caller keeps the capsule alive).
template <typename T>
const T* capsule_pointer(const py::object& obj, const char* name, const char* argument) {
  if (!PyCapsule_IsValid(obj.ptr(), name)) {
    throw std::invalid_argument(std::string("`") + argument + "` must be a PyCapsule named '" + name +
                                "' as returned by __arrow_c_array__(), got " +
                                std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  return static_cast<const T*>(PyCapsule_GetPointer(obj.ptr(), name));
}

py::dict text_stats(const py::object& schema_capsule, const py::object& array_capsule, double threshold, int threads,
                    bool with_mtld) {
  check_threshold(threshold);
  const auto* schema = capsule_pointer<ArrowSchema>(schema_capsule, "arrow_schema", "schema_capsule");
  const auto* array = capsule_pointer<ArrowArray>(array_capsule, "arrow_array", "array_capsule");
  const ArrowStringArray rows(schema, array);

  const auto n = py::ssize_t(rows.size());
  py::array_t<bool> valid(n);
  py::array_t<int64_t> words(n), unique_words(n), chars(n), bytes(n), utf8_error(n);
  py::array_t<double> ttr(n), mtld(n);
  const TextStatsColumns out{valid.mutable_data(), words.mutable_data(), unique_words.mutable_data(),
                             ttr.mutable_data(),   mtld.mutable_data(),  chars.mutable_data(),
                             bytes.mutable_data(), utf8_error.mutable_data()};
  {
    py::gil_scoped_release release;
    compute_text_stats(rows, out, threshold, with_mtld, threads);
  }
  py::dict result;
  result["valid"] = valid;
  result["words"] = words;
  result["unique_words"] = unique_words;
  result["ttr"] = ttr;
  result["mtld"] = mtld;
  result["chars"] = chars;
  result["bytes"] = bytes;
  result["utf8_error"] = utf8_error;
  return result;
}

py::array_t<int64_t> utf8_check(const py::object& schema_capsule, const py::object& array_capsule, int threads) {
  const auto* schema = capsule_pointer<ArrowSchema>(schema_capsule, "arrow_schema", "schema_capsule");
  const auto* array = capsule_pointer<ArrowArray>(array_capsule, "arrow_array", "array_capsule");
  const ArrowStringArray rows(schema, array);
  py::array_t<int64_t> out(py::ssize_t(rows.size()));
  int64_t* data = out.mutable_data();
  {
    py::gil_scoped_release release;
    utf8::check_array(rows, data, threads);
  }
  return out;
}

// (the decoded value, the offset past the closing quote) of the JSON string literal at data[start].
py::tuple json_string(const py::bytes& data, size_t start) {
  const std::string_view s = data;
  size_t end;
  {
    py::gil_scoped_release release;
    end = json::string_end(s, start);
  }
  // The value is decoded straight into a bytes object of the literal's size (decoding never grows
  // text), then shrunk: one copy of a long value, not three.
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, py::ssize_t(end - start));
  if (raw == nullptr) throw py::error_already_set();
  py::object out = py::reinterpret_steal<py::object>(raw);
  size_t n;
  {
    py::gil_scoped_release release;
    n = json::decode_string(s, start, end, PyBytes_AS_STRING(raw));
  }
  PyObject* shrunk = out.release().ptr();
  if (_PyBytes_Resize(&shrunk, py::ssize_t(n)) != 0) throw py::error_already_set();
  return py::make_tuple(py::reinterpret_steal<py::bytes>(shrunk), end);
}

py::bytes utf8_replace(const py::bytes& data) {
  std::string_view text = data;
  std::string fixed;
  {
    py::gil_scoped_release release;
    fixed = utf8::replace_invalid(text);
  }
  return py::bytes(fixed);
}

py::object mtld_one(std::string_view text, double threshold) {
  check_threshold(threshold);
  double value;
  {
    py::gil_scoped_release release;
    value = instructfast::mtld(text, threshold);
  }
  if (std::isnan(value)) return py::none();
  return py::float_(value);
}

bool isspace_cp(int64_t cp) {
  if (cp < 0 || cp > int64_t(unicode::kMaxCodePoint)) {
    throw std::invalid_argument("code point must be in [0, 0x10FFFF], got " + std::to_string(cp));
  }
  return unicode::is_space(char32_t(cp));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "Native core of instructfast (text statistics, MTLD). Use instructfast.indicators instead.";
  m.attr("__version__") = INSTRUCTFAST_VERSION;
  m.attr("UNICODE_VERSION") = unicode::unicode_version();

  // Malformed Arrow data raises instructfast.ArrowDataError (a ValueError), the project's
  // own class; ValueError when the package's errors module cannot be imported.
  static PyObject* arrow_data_error = PyExc_ValueError;
  try {
    py::object cls = py::module_::import("instructfast.errors").attr("ArrowDataError");
    arrow_data_error = cls.release().ptr();
  } catch (const py::error_already_set&) {
    PyErr_Clear();
  }
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ArrowDataError& e) {
      PyErr_SetString(arrow_data_error, e.what());
    }
  });

  m.def("text_stats", &text_stats, py::arg("schema_capsule"), py::arg("array_capsule"), py::kw_only(),
        py::arg("threshold") = 0.72, py::arg("threads") = 0, py::arg("mtld") = true,
        "Per-row word counts, TTR, MTLD and lengths of an Arrow string array given as PyCapsules.");
  m.def("utf8_check", &utf8_check, py::arg("schema_capsule"), py::arg("array_capsule"), py::kw_only(),
        py::arg("threads") = 0,
        "Byte offset of the first invalid UTF-8 sequence of each element of an Arrow string array (-1: valid or null).");
  m.def("utf8_replace", &utf8_replace, py::arg("data"),
        "The bytes with each invalid UTF-8 sequence replaced by U+FFFD (an encoded surrogate counts as one).");
  m.def("json_string", &json_string, py::arg("data"), py::arg("start"),
        "(value, end) of the JSON string literal whose opening quote is data[start]: escapes decoded, lone "
        "surrogate escapes as their 3-byte encodings; ValueError for bad syntax.");
  m.def("mtld", &mtld_one, py::arg("text"), py::arg("threshold") = 0.72,
        "MTLD of one text exactly as lexicalrichness 0.5.1; None when it has no tokens.");
  m.def("tokenize", &instructfast::tokenize, py::arg("text"), "lexicalrichness 0.5.1 tokens of one text.");
  m.def(
      "lower", [](std::string_view text) { return unicode::lower(text); }, py::arg("text"),
      "Exactly str.lower().");
  m.def("isspace", &isspace_cp, py::arg("cp"), "str.isspace() of the code point cp.");
}
