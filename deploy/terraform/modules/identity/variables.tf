variable "project_id" {
  type        = string
  description = "GCP project of the service accounts."
}

variable "prefix" {
  type        = string
  description = "Prefix of the account ids, e.g. sluice-stg (at most 20 characters)."
}

variable "target" {
  type        = string
  description = "Where Sluice runs: gke (workload identity) or cloud_run."
  validation {
    condition     = contains(["gke", "cloud_run"], var.target)
    error_message = "target is gke or cloud_run."
  }
}

variable "gke_namespace" {
  type        = string
  default     = "sluice"
  description = "gke: namespace of the Kubernetes service account."
}

variable "gke_service_account" {
  type        = string
  default     = "sluice"
  description = "gke: the Kubernetes service account the pods run as."
}

variable "cloud_run_service" {
  type        = string
  default     = ""
  description = "cloud_run: the service the push invoker may call."
}

variable "region" {
  type        = string
  description = "Region of the Cloud Run service."
}
