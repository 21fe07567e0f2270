# Scripted end-to-end tests: the real binary on 127.0.0.1, ports chosen free at run time.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
    foreach(case fingerprint stun reject badconfig)
        add_test(NAME e2e/server_${case}
                 COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/e2e/server_e2e.py
                         $<TARGET_FILE:burrow> ${case})
        set_tests_properties(e2e/server_${case} PROPERTIES LABELS e2e TIMEOUT 30)
    endforeach()

    # Agent cases with their time limits (s): generous for 2 shared cores, each still far
    # below what a hang would take. bigfile moves 100 MiB; restart waits for reconnects.
    foreach(case_timeout bigfile:150 concurrent:90 halfclose:45 refused:45 restart:120
                         sighup:45 badconfig:60 status:45 unknownkey:30
                         wrongfingerprint:30 relaytcp:90)
        string(REPLACE ":" ";" pair ${case_timeout})
        list(GET pair 0 case)
        list(GET pair 1 timeout)
        add_test(NAME e2e/agent_${case}
                 COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/e2e/agent_e2e.py
                         $<TARGET_FILE:burrow> ${case})
        # 77: harness.SKIP, e.g. status when `burrow status` is not built.
        set_tests_properties(e2e/agent_${case} PROPERTIES LABELS e2e TIMEOUT ${timeout}
                             SKIP_RETURN_CODE 77)
    endforeach()

    # The demo as a user runs it, with the binary under test instead of a fresh build.
    add_test(NAME e2e/demo_once COMMAND ${CMAKE_SOURCE_DIR}/run.sh demo --once)
    set_tests_properties(e2e/demo_once PROPERTIES LABELS e2e TIMEOUT 60
                         ENVIRONMENT BURROW=$<TARGET_FILE:burrow>)
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
