# Every dependency comes from Debian's packages, found through CMake config
# files or pkg-config. (SPF needs no library: policies/spf.cpp evaluates
# RFC 7208 itself on libunbound.)
find_package(PkgConfig REQUIRED)

find_package(Boost 1.81 REQUIRED CONFIG)
find_package(OpenSSL REQUIRED)
find_package(ZLIB REQUIRED)  # gzip'd rotations of the decision log
find_package(fmt REQUIRED CONFIG)
find_package(spdlog REQUIRED CONFIG)
find_package(tomlplusplus REQUIRED CONFIG)
find_package(CLI11 REQUIRED CONFIG)
find_package(nlohmann_json 3.10 REQUIRED CONFIG)

pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
pkg_check_modules(GMIME REQUIRED IMPORTED_TARGET gmime-3.0)
pkg_check_modules(OPENDKIM REQUIRED IMPORTED_TARGET opendkim)
pkg_check_modules(UNBOUND REQUIRED IMPORTED_TARGET libunbound)
pkg_check_modules(MILTER REQUIRED IMPORTED_TARGET milter)

if(SMTPGATE_TESTS)
  find_package(Catch2 2 REQUIRED CONFIG)
  find_package(yaml-cpp REQUIRED CONFIG)  # the RFC 7208 SPF test suite is YAML
endif()
