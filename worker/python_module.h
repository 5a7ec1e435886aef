#ifndef RUNG_WORKER_PYTHON_MODULE_H_
#define RUNG_WORKER_PYTHON_MODULE_H_

namespace rung {
// The files of client/python/rung that need only the standard library (the reporter and
// rung.ablation), embedded at build time.
struct PythonFile {
  const char* name;  // e.g. "__init__.py"
  const char* source;
};
extern const PythonFile kPythonModule[];
extern const int kPythonModuleFiles;
}  // namespace rung

#endif  // RUNG_WORKER_PYTHON_MODULE_H_
