# Scripted end-to-end tests: the real binary on 127.0.0.1, ports chosen free at run time.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
    foreach(case fingerprint stun reject badconfig)
        add_test(NAME e2e/server_${case}
                 COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/e2e/server_e2e.py
                         $<TARGET_FILE:burrow> ${case})
        set_tests_properties(e2e/server_${case} PROPERTIES LABELS e2e TIMEOUT 30)
    endforeach()
endif()

# `burrow status` against a stand-in admin endpoint (the CLI alone; no agent needed).
if(Python3_FOUND)
    foreach(case table json config unreachable badinput)
        add_test(NAME e2e/status_${case}
                 COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/e2e/status_e2e.py
                         $<TARGET_FILE:burrow> ${case})
        set_tests_properties(e2e/status_${case} PROPERTIES LABELS e2e TIMEOUT 30)
    endforeach()
endif()
