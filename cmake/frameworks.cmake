# Framework detection: ask the Python interpreter that will import the libraries.

function(ganops_python_query out code)
  execute_process(COMMAND ${Python_EXECUTABLE} -c "${code}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE value ERROR_VARIABLE err
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(rc EQUAL 0)
    set(${out} "${value}" PARENT_SCOPE)
  else()
    set(${out} "" PARENT_SCOPE)
    set(${out}_ERROR "${err}" PARENT_SCOPE)
  endif()
endfunction()

# Sets GANOPS_BUILD_<NAME> from the switch and whether the query succeeded.
function(ganops_decide name switch found reason)
  string(TOUPPER "${switch}" switch)
  if(switch STREQUAL "OFF")
    set(GANOPS_BUILD_${name} OFF PARENT_SCOPE)
  elseif(found)
    set(GANOPS_BUILD_${name} ON PARENT_SCOPE)
  elseif(switch STREQUAL "ON")
    message(FATAL_ERROR "GANOPS_WITH_${name}=ON but it is not usable from ${Python_EXECUTABLE}: ${reason}")
  else()
    message(STATUS "ganops: ${name} not importable, its library is skipped (AUTO)")
    set(GANOPS_BUILD_${name} OFF PARENT_SCOPE)
  endif()
endfunction()

macro(ganops_detect_torch)
  ganops_python_query(_torch_info [=[
import torch, torch.utils.cpp_extension as ce, os
print(torch.__version__)
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
print(torch.version.cuda or '')
print('|'.join(ce.include_paths()))
print(os.path.join(os.path.dirname(torch.__file__), 'lib'))
]=])
  set(_found FALSE)
  if(_torch_info)
    set(_found TRUE)
  endif()
  ganops_decide(TORCH "${GANOPS_WITH_TORCH}" ${_found} "${_torch_info_ERROR}")
  set(GANOPS_TORCH_VERSION "")
  set(GANOPS_TORCH_CUDA_VERSION "")
  if(GANOPS_BUILD_TORCH)
    string(REPLACE "\n" ";" _lines "${_torch_info}")
    list(GET _lines 0 GANOPS_TORCH_VERSION)
    list(GET _lines 1 GANOPS_TORCH_ABI)
    list(GET _lines 2 GANOPS_TORCH_CUDA_VERSION)
    list(GET _lines 3 _inc)
    string(REPLACE "|" ";" GANOPS_TORCH_INCLUDE_DIRS "${_inc}")
    list(GET _lines 4 GANOPS_TORCH_LIBRARY_DIR)
    set(GANOPS_TORCH_LIBRARIES
        ${GANOPS_TORCH_LIBRARY_DIR}/libc10${CMAKE_SHARED_LIBRARY_SUFFIX}
        ${GANOPS_TORCH_LIBRARY_DIR}/libtorch_cpu${CMAKE_SHARED_LIBRARY_SUFFIX})
    if(GANOPS_TORCH_CUDA_VERSION)
      list(APPEND GANOPS_TORCH_LIBRARIES
           ${GANOPS_TORCH_LIBRARY_DIR}/libc10_cuda${CMAKE_SHARED_LIBRARY_SUFFIX}
           ${GANOPS_TORCH_LIBRARY_DIR}/libtorch_cuda${CMAKE_SHARED_LIBRARY_SUFFIX})
    endif()
  endif()
endmacro()

macro(ganops_detect_tf)
  ganops_python_query(_tf_info [=[
import os
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
import tensorflow as tf
print(tf.__version__)
print(int(tf.test.is_built_with_cuda()))
print('|'.join(tf.sysconfig.get_compile_flags()))
print('|'.join(tf.sysconfig.get_link_flags()))
]=])
  set(_found FALSE)
  if(_tf_info)
    set(_found TRUE)
  endif()
  ganops_decide(TF "${GANOPS_WITH_TF}" ${_found} "${_tf_info_ERROR}")
  set(GANOPS_TF_VERSION "")
  set(GANOPS_TF_BUILT_WITH_CUDA 0)
  if(GANOPS_BUILD_TF)
    string(REPLACE "\n" ";" _lines "${_tf_info}")
    list(GET _lines 0 GANOPS_TF_VERSION)
    list(GET _lines 1 GANOPS_TF_BUILT_WITH_CUDA)
    list(GET _lines 2 _cflags)
    list(GET _lines 3 _lflags)
    string(REPLACE "|" ";" GANOPS_TF_COMPILE_FLAGS "${_cflags}")
    string(REPLACE "|" ";" GANOPS_TF_LINK_FLAGS "${_lflags}")
    list(REMOVE_ITEM GANOPS_TF_COMPILE_FLAGS "--std=c++17")
    set(GANOPS_TF_ABI 0)
    if("-D_GLIBCXX_USE_CXX11_ABI=1" IN_LIST GANOPS_TF_COMPILE_FLAGS)
      set(GANOPS_TF_ABI 1)
    endif()
  endif()
endmacro()

# Both libraries can live in one process only if they agree on the libstdc++ ABI.
macro(ganops_check_abi)
  if(GANOPS_BUILD_TORCH AND GANOPS_BUILD_TF AND NOT GANOPS_TORCH_ABI EQUAL GANOPS_TF_ABI)
    message(FATAL_ERROR "torch uses _GLIBCXX_USE_CXX11_ABI=${GANOPS_TORCH_ABI} but TensorFlow "
                        "uses ${GANOPS_TF_ABI}; build one of them alone (GANOPS_WITH_TORCH/TF=OFF)")
  endif()
endmacro()
