# The Debian package, end to end: cpack builds the .deb (with dpkg-shlibdeps
# dependencies), dpkg-deb extracts it into a temporary root, and the
# extracted smtpgate lints the extracted example config — which proves the
# installed config names installed paths (rules/*.rules relative to
# /etc/smtpgate, lists ../lists/ relative to the rules).
#
#   cmake -DBINARY_DIR=... -DCPACK=... -DDPKG_DEB=... -P package_test.cmake
set(work ${BINARY_DIR}/package-test)
file(REMOVE_RECURSE ${work})
file(MAKE_DIRECTORY ${work}/out ${work}/root)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAILED (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(out "${out}${err}" PARENT_SCOPE)
endfunction()

run(${CPACK} --config ${BINARY_DIR}/CPackConfig.cmake -B ${work}/out)
file(GLOB debs ${work}/out/smtpgate_*.deb)
list(LENGTH debs n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected one smtpgate_*.deb in ${work}/out, found: ${debs}")
endif()
message(STATUS "package: ${debs}")

run(${DPKG_DEB} --field ${debs} Package Depends)
message(STATUS "control:\n${out}")
foreach(dep libre2 libopendkim libunbound adduser)
  if(NOT out MATCHES "${dep}")
    message(FATAL_ERROR "Depends lacks ${dep} (dpkg-shlibdeps did not run?):\n${out}")
  endif()
endforeach()
run(${DPKG_DEB} --ctrl-tarfile ${debs})
run(${DPKG_DEB} -I ${debs} conffiles)
if(NOT out MATCHES "/etc/smtpgate/smtpgate.toml" OR NOT out MATCHES "/etc/smtpgate/rules/")
  message(FATAL_ERROR "conffiles lacks the config:\n${out}")
endif()

run(${DPKG_DEB} -x ${debs} ${work}/root)
set(root ${work}/root)
foreach(f usr/sbin/smtpgate etc/smtpgate/smtpgate.toml etc/smtpgate/rules/00-lists.rules
          etc/smtpgate/lists/office.cidr etc/logrotate.d/smtpgate
          lib/systemd/system/smtpgate-proxy.service lib/systemd/system/smtpgate-milter.service
          usr/share/man/man8/smtpgate.8 usr/share/man/man5/smtpgate.toml.5
          usr/share/man/man5/smtpgate-rules.5)
  if(NOT EXISTS ${root}/${f})
    message(FATAL_ERROR "missing from the package: /${f}")
  endif()
endforeach()
if(NOT IS_DIRECTORY ${root}/var/log/smtpgate)
  message(FATAL_ERROR "missing from the package: /var/log/smtpgate/")
endif()
file(READ ${root}/lib/systemd/system/smtpgate-proxy.service unit)
if(NOT unit MATCHES "ExecStart=/usr/sbin/smtpgate proxy -c /etc/smtpgate/smtpgate.toml")
  message(FATAL_ERROR "proxy unit does not run /usr/sbin/smtpgate:\n${unit}")
endif()

run(${root}/usr/sbin/smtpgate --version)
run(${root}/usr/sbin/smtpgate lint -c ${root}/etc/smtpgate/smtpgate.toml)
message(STATUS "${out}")
if(NOT out MATCHES "OK, [0-9]+ rules")
  message(FATAL_ERROR "lint of the installed config did not say OK:\n${out}")
endif()
run(${root}/usr/sbin/smtpgate lint --strict -c ${root}/etc/smtpgate/smtpgate.toml)
file(REMOVE_RECURSE ${work}/root)
message(STATUS "package test passed")
